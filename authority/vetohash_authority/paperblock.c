/* The paper network's feature block, fused for training on a CPU (see native.py).
 *
 * For an (N, C, S, S) float32 batch, a 2x2 convolution with 'same' padding (one zero row and column after the
 * image), ReLU, 2x2 max pooling, dropout and global average pooling:
 *
 *   pooled[n,w,f] = max over the 4 positions p of window w of (bias[f] + sum_k weight[f,k] * patch_p[k])
 *   gap[n,f]      = mean over windows w of relu(pooled[n,w,f]) * keep[n,w,f] / (1 - rate)
 *
 * which is what torch's ZeroPad2d, Conv2d, ReLU, MaxPool2d, Dropout and AdaptiveAvgPool2d compute (ReLU commutes
 * with max; the first maximum wins ties, as in max pooling). No 64x32x32 feature map is ever stored: each
 * window is computed in registers. Backward recomputes the winning patch from the input and sends each
 * gradient to it. Dropout draws from a counter-based hash of a caller's seed, so a run is reproducible.
 */
#include <stdint.h>
#include <string.h>

#define MAX_F 1024
#define MAX_K 64

/* The 4 patches (row-major positions) of window (i, j), each K = C*4 values ordered (c, dy, dx). */
static inline void window_patches(const float *x, int c_count, int s, int i, int j, float patch[4][MAX_K]) {
    for (int a = 0; a < 2; a++) {
        for (int b = 0; b < 2; b++) {
            int p = a * 2 + b, y = 2 * i + a, xx = 2 * j + b;
            for (int c = 0; c < c_count; c++) {
                const float *plane = x + (int64_t)c * s * s;
                for (int dy = 0; dy < 2; dy++) {
                    for (int dx = 0; dx < 2; dx++) {
                        int yy = y + dy, xc = xx + dx;
                        patch[p][c * 4 + dy * 2 + dx] = (yy < s && xc < s) ? plane[yy * s + xc] : 0.0f;
                    }
                }
            }
        }
    }
}

/* A counter-based 32-bit hash (murmur3's finaliser) for dropout: vectorisable, and the same draw for the same
 * (seed, unit) whatever the loop order. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x85EBCA6Bu; x ^= x >> 13; x *= 0xC2B2AE35u; x ^= x >> 16;
    return x;
}

/* weight_t: (K, F) transposed weights. keep_out: (N, H*H, F) uint8, 1 where the unit is active and kept.
 * winner_out: (N, H*H, F) uint8, the winning position. gap_out: (N, F). Returns 0, or -1 on bad sizes. */
int paper_forward(const float *restrict x, const float *restrict weight_t, const float *restrict bias,
                  int n_count, int c_count, int s, int f_count, float rate, uint64_t seed,
                  float *restrict gap_out, uint8_t *restrict keep_out, uint8_t *restrict winner_out) {
    int k_count = c_count * 4, h = s / 2, windows = h * h;
    if (f_count > MAX_F || k_count > MAX_K || s % 2) return -1;
    float z0[MAX_F], z1[MAX_F], z2[MAX_F], z3[MAX_F], patch[4][MAX_K], acc[MAX_F], best[MAX_F];
    int32_t win[MAX_F], on[MAX_F];
    float *z[4] = {z0, z1, z2, z3};
    uint32_t seed_lo = (uint32_t)seed, seed_hi = (uint32_t)(seed >> 32);
    uint32_t cut = (uint32_t)(rate * 16777216.0f);  /* keep when a 24-bit draw >= rate * 2^24 */
    float scale = rate > 0 ? 1.0f / (1.0f - rate) : 1.0f;
    float mean = scale / (float)windows;
    for (int n = 0; n < n_count; n++) {
        const float *image = x + (int64_t)n * c_count * s * s;
        for (int f = 0; f < f_count; f++) acc[f] = 0.0f;
        for (int i = 0; i < h; i++) {
            for (int j = 0; j < h; j++) {
                int64_t row = ((int64_t)n * windows + i * h + j) * f_count;
                uint8_t *restrict keep = keep_out + row;
                uint8_t *restrict winner = winner_out + row;
                window_patches(image, c_count, s, i, j, patch);
                if (k_count == 4) {  /* one grey channel, the paper's case: all four positions in one pass */
                    const float *restrict w0 = weight_t, *restrict w1 = weight_t + f_count,
                                *restrict w2 = weight_t + 2 * f_count, *restrict w3 = weight_t + 3 * f_count;
                    const float *a = patch[0], *b = patch[1], *c = patch[2], *d = patch[3];
                    float winf[MAX_F];
                    for (int f = 0; f < f_count; f++) {
                        float za = bias[f] + w0[f] * a[0] + w1[f] * a[1] + w2[f] * a[2] + w3[f] * a[3];
                        float zb = bias[f] + w0[f] * b[0] + w1[f] * b[1] + w2[f] * b[2] + w3[f] * b[3];
                        float zc = bias[f] + w0[f] * c[0] + w1[f] * c[1] + w2[f] * c[2] + w3[f] * c[3];
                        float zd = bias[f] + w0[f] * d[0] + w1[f] * d[1] + w2[f] * d[2] + w3[f] * d[3];
                        float m = za, wn = 0.0f;  /* the position as a float keeps the loop in vector registers */
                        wn = zb > m ? 1.0f : wn; m = zb > m ? zb : m;
                        wn = zc > m ? 2.0f : wn; m = zc > m ? zc : m;
                        wn = zd > m ? 3.0f : wn; m = zd > m ? zd : m;
                        best[f] = m;
                        winf[f] = wn;
                    }
                    for (int f = 0; f < f_count; f++) win[f] = (int32_t)winf[f];
                } else {
                    for (int p = 0; p < 4; p++) {
                        float *restrict zp = z[p];
                    for (int f = 0; f < f_count; f++) zp[f] = bias[f];
                        for (int k = 0; k < k_count; k++) {
                            float v = patch[p][k];
                            const float *restrict wk = weight_t + (int64_t)k * f_count;
                            for (int f = 0; f < f_count; f++) zp[f] += wk[f] * v;
                        }
                    }
                    /* first maximum wins, as in max pooling; branch-free loops so that they vectorise */
                    for (int f = 0; f < f_count; f++) { best[f] = z0[f]; win[f] = 0; }
                    for (int p = 1; p < 4; p++) {
                        const float *restrict zp = z[p];
                        for (int f = 0; f < f_count; f++) {
                            float more = zp[f] > best[f] ? 1.0f : 0.0f;
                            best[f] = more > 0.0f ? zp[f] : best[f];
                            win[f] = more > 0.0f ? p : win[f];
                        }
                    }
                }
                if (rate > 0.0f) {
                    uint32_t base = (uint32_t)row;
                    for (int f = 0; f < f_count; f++) {
                        uint32_t draw = mix32(mix32((base + (uint32_t)f) ^ seed_lo) ^ seed_hi) >> 8;
                        on[f] = (best[f] > 0.0f) & (draw >= cut);
                    }
                } else {
                    for (int f = 0; f < f_count; f++) on[f] = best[f] > 0.0f;
                }
                for (int f = 0; f < f_count; f++) acc[f] += on[f] ? best[f] : 0.0f;
                for (int f = 0; f < f_count; f++) keep[f] = (uint8_t)on[f];
                for (int f = 0; f < f_count; f++) winner[f] = (uint8_t)win[f];
            }
        }
        for (int f = 0; f < f_count; f++) gap_out[(int64_t)n * f_count + f] = acc[f] * mean;
    }
    return 0;
}

/* grad_gap: (N, F). Adds into grad_weight_t (K, F) and grad_bias (F). */
int paper_backward(const float *restrict x, const float *restrict grad_gap, const uint8_t *restrict keep,
                   const uint8_t *restrict winner, int n_count, int c_count, int s, int f_count, float rate,
                   float *restrict grad_weight_t, float *restrict grad_bias) {
    int k_count = c_count * 4, h = s / 2, windows = h * h;
    if (f_count > MAX_F || k_count > MAX_K || s % 2) return -1;
    float patch[4][MAX_K], g0[MAX_F], g1[MAX_F], g2[MAX_F], g3[MAX_F], kf[MAX_F], wf[MAX_F];
    float *g[4] = {g0, g1, g2, g3};
    float scale = rate > 0 ? 1.0f / (1.0f - rate) : 1.0f;
    float mean = scale / (float)windows;
    for (int n = 0; n < n_count; n++) {
        const float *image = x + (int64_t)n * c_count * s * s;
        const float *restrict gn = grad_gap + (int64_t)n * f_count;
        for (int i = 0; i < h; i++) {
            for (int j = 0; j < h; j++) {
                int64_t row = ((int64_t)n * windows + i * h + j) * f_count;
                const uint8_t *restrict kp = keep + row;
                const uint8_t *restrict wp = winner + row;
                /* all-float loops (bytes widened first), so that they vectorise */
                for (int f = 0; f < f_count; f++) { kf[f] = (float)kp[f]; wf[f] = (float)wp[f]; }
                for (int f = 0; f < f_count; f++) {
                    float v = kf[f] * gn[f] * mean;
                    float w = wf[f];
                    g0[f] = w == 0.0f ? v : 0.0f;
                    g1[f] = w == 1.0f ? v : 0.0f;
                    g2[f] = w == 2.0f ? v : 0.0f;
                    g3[f] = w == 3.0f ? v : 0.0f;
                    grad_bias[f] += v;
                }
                window_patches(image, c_count, s, i, j, patch);
                for (int k = 0; k < k_count; k++) {
                    float *restrict gk = grad_weight_t + (int64_t)k * f_count;
                    float v0 = patch[0][k], v1 = patch[1][k], v2 = patch[2][k], v3 = patch[3][k];
                    for (int f = 0; f < f_count; f++) gk[f] += g0[f] * v0 + g1[f] * v1 + g2[f] * v2 + g3[f] * v3;
                }
            }
        }
    }
    (void)g;
    return 0;
}
