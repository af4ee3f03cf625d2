"""The `authority` commands end to end on a few images, as a user runs them: keygen -> train -> evaluate ->
publish -> the shared verifier accepts the bundle. Bad input gets one line and exit status 2."""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from pathlib import Path

import pytest

from vetohash.bundle import read_bundle
from vetohash.keys import read_public_key
from vetohash_authority.cli import cli, main
from vetohash_authority.cropviews import PER_IMAGE

from .fixtures import TINY_CONFIG, one_thread, write_pictures  # noqa: F401  (autouse)

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = tuple(sorted(cli.commands))  # every subcommand, so a new one cannot skip its help or guide


def authority(args: list[str], capsys: pytest.CaptureFixture[str], env: dict[str, str] | None = None,
              monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    """Run the console entry point in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    old = sys.argv
    sys.argv = ["authority", *args]
    try:
        if monkeypatch is not None:
            for key, value in (env or {}).items():
                monkeypatch.setenv(key, value)
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """banned/ (5 images and a corrupt file), innocent/ (4 other images), tiny.toml."""
    root = tmp_path_factory.mktemp("authority")
    write_pictures(root / "banned", range(5), prefix="secret-name")
    (root / "banned" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    write_pictures(root / "innocent", range(100, 104))
    (root / "tiny.toml").write_text(TINY_CONFIG)
    return root


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    """A model trained once for the module through the command line (2 epochs, 8 copies per image)."""
    from click.testing import CliRunner

    path = work / "tiny.model"
    result = CliRunner().invoke(cli, ["train", str(work / "banned"), "--recipe", "paper", "--out", str(path), "--config",
                                      str(work / "tiny.toml"), "--seed", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return path


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    code, out, _ = authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    assert code == 0
    key, pub = tmp_path / "keys" / "authority.key", tmp_path / "keys" / "authority.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert read_public_key(pub).to_text() in out
    code, _, err = authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    assert code == 2 and "refusing to overwrite" in err and err.count("\n") == 1


def test_train_writes_model_and_loss_curve_and_names_skipped_files(work: Path, capsys) -> None:
    code, out, err = authority(["train", str(work / "banned"), "--recipe", "paper", "--out", str(work / "again.model"), "--config",
                                str(work / "tiny.toml"), "--epochs", "1", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert (work / "again.model").stat().st_size > 0
    assert (work / "again.loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "corrupt.jpg" in err and err.startswith("warning: skipped")
    assert "wrote" in out and "1 epochs" in out


def test_evaluate_writes_the_report(work: Path, model: Path, capsys) -> None:
    report = work / "report"
    code, out, err = authority(["evaluate", str(model), str(work / "banned"), "--innocent", str(work / "innocent"),
                                "--report-dir", str(report), "--quiet"], capsys)
    assert code == 0, err
    assert "between sources" in out and "to held-out altered copies" in out and "suggested threshold" in out
    data = json.loads((report / "report.json").read_text())
    assert data["images"] == {"banned": 5, "in_training": 5, "altered_copies": 5 * 2 * 1,
                              "copies_held_out": True, "innocent": 4}
    assert data["distances"]["between_sources"]["n"] == 10
    assert set(data["recall"]["per_kind"]) == {"rotation", "overlay"}
    assert 0 <= data["suggested"]["threshold"] <= 128
    for name in ("histograms.png", "roc.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"


def test_publish_writes_a_bundle_the_shared_verifier_accepts(work: Path, model: Path, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    key = tmp_path / "keys" / "authority.key"
    out = tmp_path / "list.bundle"
    code, stdout, err = authority(["publish", str(model), str(work / "banned"), "--key", str(key), "--out", str(out),
                                   "--innocent", str(work / "innocent"), "--list-name", "test-list",
                                   "--expires-in", "7d", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    public = read_public_key(tmp_path / "keys" / "authority.pub")
    bundle = read_bundle(out.read_bytes(), {public.key_id: public})
    assert len(bundle.ids) == 5 and bundle.list_name == "test-list"
    assert not any("secret" in i for i in bundle.ids)  # opaque ids: no file names
    assert bundle.expires - bundle.created == 7 * 86400
    assert bundle.calibration is not None and bundle.calibration.innocent_images == 4
    assert bundle.threshold == summary["threshold"]
    code, stdout, _ = authority(["publish", str(model), str(work / "banned"), "--key", str(key), "--out",
                                 str(out), "--list-name", "test-list", "--threshold", "20", "--json"], capsys)
    assert code == 0
    assert json.loads(stdout)["sequence"] > summary["sequence"]  # increasing by default
    assert read_bundle(out.read_bytes(), {public.key_id: public}).threshold == 20
    (tmp_path / "keys" / "publish-state.json").write_text("not json")  # the library's error, the flag added
    code, _, err = authority(["publish", str(model), str(work / "banned"), "--key", str(key), "--out", str(out),
                              "--list-name", "test-list", "--threshold", "20"], capsys)
    assert code == 2 and "cannot read the publishing state" in err and "fix or remove it, or give --sequence" in err


def test_publish_carries_the_dct_hashes_paired_with_the_network_hashes(work: Path, model: Path, tmp_path: Path,
                                                                       capsys, monkeypatch) -> None:
    """Each banned image's DCT hash sits in the row of its network hash (both shuffled alike), the thresholds
    are calibrated jointly and the union rate recorded with its bound (format version 5); --dct-threshold is
    kept as given; --no-dct (with --no-crops) writes a version 1 bundle; the two together are refused."""
    import numpy as np

    from vetohash.dcthash import dct_hashes
    from vetohash.matching import hamming_matrix
    from vetohash.modelfile import read_model
    from vetohash.preprocess import open_image

    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    public = read_public_key(tmp_path / "keys" / "authority.pub")
    out = tmp_path / "fused.bundle"
    base = ["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "keys" / "authority.key"),
            "--out", str(out), "--json", "--no-crops"]
    code, stdout, err = authority([*base, "--innocent", str(work / "innocent"), "--target-fpr", "0.5",
                                   "--forgery-guard"], capsys)
    assert code == 0, err
    summary, bundle = json.loads(stdout), read_bundle(out.read_bytes(), {public.key_id: public})
    assert (summary["format_version"], summary["decision"], bundle.version) == (6, "neural-or-dct", 6)
    assert bundle.agree is not None and summary["dct_agree"] == bundle.agree["dct"] >= bundle.dct.threshold
    assert bundle.dct is not None and bundle.dct.threshold == summary["dct_threshold"]
    files = sorted((work / "banned").glob("secret-name*"))
    hasher, _ = read_model(model)
    images = [open_image(path) for path in files]
    neural, dct = hasher.hash_images(images), dct_hashes(images)
    distances = hamming_matrix(dct, bundle.dct.hashes)  # DCT hashes tell these images apart; the tiny model may not
    assert (distances == 0).sum(axis=1).tolist() == [1] * 5
    np.testing.assert_array_equal(bundle.hashes[distances.argmin(axis=1)], neural)  # same row, same image
    assert len({h.tobytes() for h in neural}) > 1  # the premise: a wrong pairing would show
    innocent = [open_image(path) for path in sorted((work / "innocent").iterdir())]
    innocent_neural = hamming_matrix(hasher.hash_images(innocent), bundle.hashes).min(axis=1)
    innocent_dct = hamming_matrix(dct_hashes(innocent), bundle.dct.hashes).min(axis=1)
    union = np.mean((innocent_neural < bundle.threshold) | (innocent_dct < bundle.dct.threshold))
    calibration = bundle.calibration
    assert calibration is not None and calibration.measured_fpr == union <= calibration.bound_fpr <= 0.5
    assert (calibration.innocent_images, calibration.innocent_groups, calibration.confidence) == (4, 4, 0.9)
    assert summary["calibration"] == calibration.to_dict()
    assert "has no sub-folders, so each innocent image counts as its own group" in err

    code, stdout, err = authority([*base, "--innocent", str(work / "innocent"), "--dct-threshold", "7"], capsys)
    assert code == 0, err
    assert read_bundle(out.read_bytes(), {public.key_id: public}).dct.threshold == 7
    code, stdout, err = authority([*base, "--threshold", "10"], capsys)
    assert code == 0 and json.loads(stdout)["dct_threshold"] == 32 and "DCT threshold 32, which is not" in err
    code, stdout, err = authority([*base, "--threshold", "10", "--no-dct"], capsys)
    plain = read_bundle(out.read_bytes(), {public.key_id: public})
    assert code == 0 and plain.version == 1 and plain.dct is None and json.loads(stdout)["dct_threshold"] is None
    code, _, err = authority([*base, "--no-dct", "--dct-threshold", "5"], capsys)
    assert code == 2 and "contradict" in err and err.count("\n") == 1


def test_publish_carries_each_banned_image_s_crop_hashes_under_its_id(work: Path, model: Path, tmp_path: Path,
                                                                       capsys, monkeypatch) -> None:
    """Calibrated, a bundle carries the crop hashes of every banned image, each owned by that image's row;
    the three thresholds are calibration.choose's on the innocent images' distances and the authority's own
    altered copies. Without --innocent, crop hashes come only with --crops-threshold; --no-crops leaves them
    out, and contradicts a threshold."""
    from vetohash.dcthash import dct_hashes
    from vetohash.matching import hamming_matrix
    from vetohash.modelfile import read_model
    from vetohash.preprocess import open_image
    from vetohash_authority.cropviews import crop_hashes
    import numpy as np

    from vetohash.signals import CROPS, DCT, NETWORK
    from vetohash_authority import calibration

    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    public = read_public_key(tmp_path / "keys" / "authority.pub")
    out = tmp_path / "crops.bundle"
    base = ["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "keys" / "authority.key"),
            "--out", str(out), "--json"]
    code, stdout, err = authority([*base, "--innocent", str(work / "innocent"), "--target-fpr", "0.5"], capsys)
    assert code == 0, err
    summary, bundle = json.loads(stdout), read_bundle(out.read_bytes(), {public.key_id: public})
    # By default any hash near is a match: no agreement thresholds, so version 5.
    assert (summary["format_version"], summary["decision"]) == (5, "neural-or-crops-or-dct")
    assert bundle.crops is not None and summary["crops_hashes"] == len(bundle.crops.hashes) > 0
    assert bundle.agree is None
    # --forgery-guard: agreement thresholds, version 6.
    code, stdout, err = authority([*base, "--innocent", str(work / "innocent"), "--target-fpr", "0.5",
                                   "--forgery-guard"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["format_version"] == 6
    assert read_bundle(out.read_bytes(), {public.key_id: public}).agree is not None
    code, _, err = authority([*base, "--forgery-guard"], capsys)  # nothing to calibrate agreement on
    assert code == 2 and "--forgery-guard needs --innocent" in err and err.count("\n") == 1
    code, _, err = authority([*base, "--innocent", str(work / "innocent"), "--forgery-guard", "--privacy", "strict"],
                             capsys)  # one signal: nothing to agree with
    assert code == 2 and "--forgery-guard needs two signals" in err and err.count("\n") == 1
    hasher, _ = read_model(model)
    images = [open_image(path) for path in sorted((work / "banned").glob("secret-name*"))]
    rows = hamming_matrix(dct_hashes(images), bundle.dct.hashes).argmin(axis=1)  # each image's bundle row
    assert sorted(rows.tolist()) == list(range(len(images)))
    for image, row in zip(images, rows):
        mine, _ = crop_hashes(hasher, [image])
        published = bundle.crops.hashes[bundle.crops.owners == row]
        assert sorted(h.tobytes() for h in published) == sorted(h.tobytes() for h in mine)
    innocent = [open_image(path) for path in sorted((work / "innocent").iterdir())]
    queries = hasher.hash_images(innocent)
    lists = calibration.Lists({NETWORK: bundle.hashes, CROPS: bundle.crops.hashes, DCT: bundle.dct.hashes})
    copies = calibration.positives(hasher, lists, [image.convert("RGB") for image in images],
                                   [hashlib.sha256(path.read_bytes()).hexdigest()
                                    for path in sorted((work / "banned").glob("secret-name*"))])
    innocent_by = calibration.Innocents({NETWORK: hamming_matrix(queries, bundle.hashes).min(axis=1),
                                         DCT: hamming_matrix(dct_hashes(innocent), bundle.dct.hashes).min(axis=1),
                                         CROPS: hamming_matrix(queries, bundle.crops.hashes).min(axis=1)},
                                        np.arange(len(innocent)))
    expected = calibration.choose(innocent_by, copies, 0.5, {NETWORK: hasher.spec.bits, CROPS: hasher.spec.bits,
                                                             DCT: 256})
    assert (bundle.thresholds, bundle.agree) == (expected.thresholds, expected.agree)
    assert (bundle.calibration.measured_fpr, bundle.calibration.bound_fpr) == (expected.share, expected.bound)

    code, stdout, err = authority([*base, "--threshold", "10"], capsys)
    assert code == 0 and read_bundle(out.read_bytes(), {public.key_id: public}).crops is None
    code, stdout, err = authority([*base, "--threshold", "10", "--crops-threshold", "4"], capsys)
    assert code == 0 and read_bundle(out.read_bytes(), {public.key_id: public}).crops.threshold == 4
    code, stdout, err = authority([*base, "--innocent", str(work / "innocent"), "--no-crops"], capsys)
    assert code == 0 and json.loads(stdout)["decision"] == "neural-or-dct" and json.loads(stdout)["crops_hashes"] == 0
    code, _, err = authority([*base, "--no-crops", "--crops-threshold", "5"], capsys)
    assert code == 2 and "contradict" in err and err.count("\n") == 1
    code, _, err = authority([*base, "--threshold", "10", "--crops-threshold", "999"], capsys)
    assert code == 2 and "crops threshold 999 is more than the hash's" in err and err.count("\n") == 1


def test_publish_privacy_levels_decide_which_signals_the_bundle_carries(work: Path, model: Path, tmp_path: Path,
                                                                        capsys, monkeypatch) -> None:
    """--privacy max-recall (the default) carries the network, crop and DCT hashes; balanced no DCT hashes;
    strict the network's whole-image hash alone (all calibrated, so format version 5, which records the
    bound). A threshold for a signal the level leaves out is refused in one line."""
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    public = read_public_key(tmp_path / "keys" / "authority.pub")
    out = tmp_path / "levels.vhb"
    base = ["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "keys" / "authority.key"),
            "--out", str(out), "--json", "--innocent", str(work / "innocent"), "--target-fpr", "0.5"]
    carried = {}
    for level in ("max-recall", "balanced", "strict"):
        code, stdout, err = authority([*base, "--privacy", level], capsys)
        assert code == 0, err
        summary, bundle = json.loads(stdout), read_bundle(out.read_bytes(), {public.key_id: public})
        assert summary["privacy"] == level
        carried[level] = (bundle.version, bundle.dct is not None, bundle.crops is not None)
    assert carried == {"max-recall": (5, True, True), "balanced": (5, False, True), "strict": (5, False, False)}
    code, stdout, _ = authority(base, capsys)
    assert code == 0 and json.loads(stdout)["privacy"] == "max-recall"
    for level, option in (("balanced", "--dct-threshold"), ("strict", "--dct-threshold"),
                          ("strict", "--crops-threshold")):
        code, _, err = authority([*base, "--privacy", level, option, "5"], capsys)
        assert code == 2 and "contradict" in err and level in err and err.count("\n") == 1


def test_encrypted_key_needs_the_right_passphrase(work: Path, model: Path, tmp_path: Path, capsys,
                                                  monkeypatch) -> None:
    monkeypatch.setenv("VETOHASH_PASSPHRASE", "correct horse")
    assert authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)[0] == 0
    key = tmp_path / "keys" / "authority.key"
    args = ["publish", str(model), str(work / "banned"), "--key", str(key), "--out", str(tmp_path / "b.bundle"),
            "--threshold", "10"]
    assert authority(args, capsys)[0] == 0
    monkeypatch.setenv("VETOHASH_PASSPHRASE", "wrong horse")
    code, _, err = authority(args, capsys)
    assert code == 2 and "wrong passphrase" in err and err.count("\n") == 1
    monkeypatch.delenv("VETOHASH_PASSPHRASE")
    code, _, err = authority(args, capsys)
    assert code == 2 and "VETOHASH_PASSPHRASE" in err and "Traceback" not in err


def test_unencrypted_key_ignores_a_passphrase_from_the_environment_but_not_one_asked_for(
        work: Path, model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    # $VETOHASH_PASSPHRASE may be set for a whole session or another key; --passphrase is the user's own claim.
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    assert authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)[0] == 0
    args = ["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "keys" / "authority.key"),
            "--out", str(tmp_path / "b.bundle"), "--threshold", "10"]
    monkeypatch.setenv("VETOHASH_PASSPHRASE", "set for another key")
    code, _, err = authority(args, capsys)
    assert code == 0, err
    code, _, err = authority([*args, "--passphrase"], capsys)
    assert code == 2 and "is not encrypted, but --passphrase was given" in err and err.count("\n") == 1


def flat_images(folder: Path) -> list[Path]:
    """A flat grey image and a near-white page with faint lines: nothing in them to hash."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    grey, page = folder / "grey.png", folder / "page.jpg"
    Image.new("RGB", (80, 60), (128, 128, 128)).save(grey)
    blank = Image.new("RGB", (200, 280), (250, 250, 248))
    ImageDraw.Draw(blank).line([(20, 100), (180, 100)], fill=(240, 240, 240))
    blank.save(page, quality=30)
    return [grey, page]


@pytest.fixture
def with_featureless(tmp_path: Path, capsys, monkeypatch) -> tuple[Path, list[Path]]:
    """A key in tmp_path/keys and tmp_path/banned: three pictures and, in scans/, two featureless images."""
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    banned = tmp_path / "banned"
    write_pictures(banned, range(3))
    return banned, flat_images(banned / "scans")


def test_publish_refuses_featureless_banned_images_and_lists_them(with_featureless, model: Path, tmp_path: Path,
                                                                  capsys) -> None:
    # Their hashes would match every blank upload; the authority is told which files to remove.
    banned, flat = with_featureless
    out = tmp_path / "list.bundle"
    args = ["publish", str(model), str(banned), "--key", str(tmp_path / "keys" / "authority.key"), "--out", str(out),
            "--threshold", "10"]
    code, _, err = authority(args, capsys)
    assert code == 2 and not out.exists()
    assert [line.split(" (")[0] for line in err.splitlines() if line.startswith("featureless: ")] == [
        f"featureless: {path}" for path in flat]
    [error] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert f"2 of the 5 banned images in {banned} are featureless" in error and "--skip-featureless" in error


def test_publish_skip_featureless_leaves_them_out_naming_each(with_featureless, model: Path, tmp_path: Path,
                                                              capsys) -> None:
    banned, flat = with_featureless
    innocent = tmp_path / "innocent"
    write_pictures(innocent, range(100, 103))
    flat_images(innocent)
    out = tmp_path / "list.bundle"
    code, stdout, err = authority(["publish", str(model), str(banned), "--key", str(tmp_path / "keys" / "authority.key"),
                                   "--out", str(out), "--innocent", str(innocent), "--skip-featureless", "--json"],
                                  capsys)
    assert code == 0, err
    for path in flat:
        assert f"warning: skipped {path}: featureless (detail " in err
    assert "warning: 2 featureless innocent image(s) left out of the calibration" in err
    assert json.loads(stdout)["hashes"] == 3
    assert json.loads(stdout)["calibration"]["innocent_images"] == 3


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "only corrupt", "not a model", "missing key",
                                  "bad duration", "too long a validity", "bad config"])
def test_bad_input_gets_one_line_and_exit_2(case: str, work: Path, model: Path, tmp_path: Path, capsys,
                                            monkeypatch) -> None:
    monkeypatch.delenv("VETOHASH_DEBUG", raising=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"garbage")
    (tmp_path / "not.model").write_bytes(b"\x93NUMPY not a model")
    (tmp_path / "bad.toml").write_text("epochs = -1\n")
    out = str(tmp_path / "x.model")
    args, expected = {
        "missing folder": (["train", str(tmp_path / "nope"), "--out", out], "no such folder"),
        "empty folder": (["train", str(tmp_path / "empty"), "--out", out], "no image files"),
        "only corrupt": (["train", str(tmp_path / "junk"), "--out", out], "could be read"),
        "not a model": (["evaluate", str(tmp_path / "not.model"), str(work / "banned")], "not a vetohash model"),
        "missing key": (["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "none.key"),
                         "--out", str(tmp_path / "b")], "no such private key file"),
        "bad duration": (["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "none.key"),
                          "--out", str(tmp_path / "b"), "--expires-in", "soon"], "cannot read the duration"),
        # Platforms refuse a bundle valid for more than 366 days (issue 16 item 8): refused before any work.
        "too long a validity": (["publish", str(model), str(work / "banned"), "--key", str(tmp_path / "none.key"),
                                 "--out", str(tmp_path / "b"), "--expires-in", "367d"], "more than the 366 days"),
        "bad config": (["train", str(work / "banned"), "--recipe", "paper", "--out", out, "--config", str(tmp_path / "bad.toml")],
                       "epochs must be"),
    }[case]
    code, _, err = authority(args, capsys)
    assert code == 2
    assert expected in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_guide(command: str, capsys) -> None:
    code, out, _ = authority([command, "--help"], capsys)
    assert code == 0 and f"authority {command} " in out
    guide = (ROOT / "docs" / "authority.md").read_text()
    assert f"authority {command}" in guide


def test_debug_variable_shows_the_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("VETOHASH_DEBUG", "1")
    code, _, err = authority(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "Traceback" in err


def test_evaluate_measures_copies_by_their_nearest_view_when_the_spec_asks_for_upright_views(
        work: Path, model: Path, tmp_path: Path, capsys) -> None:
    """Platforms screen a copy by the nearest of its views (vetohash.upright); evaluate measures it so too. The
    first view is the copy itself, so no distance can grow; copies without rotated corners do not change."""
    import dataclasses

    from vetohash.hasher import Hasher
    from vetohash.modelfile import read_model, write_model

    hasher, meta = read_model(model)
    spec = dataclasses.replace(hasher.spec, preprocess=dataclasses.replace(hasher.spec.preprocess, upright=True))
    upright = tmp_path / "upright.model"
    write_model(upright, Hasher(spec, hasher.network), meta)
    kinds = {}
    for name, path in (("plain", model), ("upright", upright)):
        report = tmp_path / name
        code, _, err = authority(["evaluate", str(path), str(work / "banned"), "--report-dir", str(report),
                                  "--quiet"], capsys)
        assert code == 0, err
        kinds[name] = json.loads((report / "report.json").read_text())["distances"]["per_kind"]
    assert kinds["upright"]["overlay"] == kinds["plain"]["overlay"]
    assert kinds["upright"]["rotation"]["mean"] <= kinds["plain"]["rotation"]["mean"]


def test_evaluate_suggests_the_thresholds_publish_would_choose(work: Path, model: Path, tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    """The thresholds evaluate suggests for a bundle with crop hashes and the DCT signal are those publish
    then calibrates by default, for the same innocent images and target; its recall counts a copy caught by
    any hash."""
    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    report = tmp_path / "report"
    code, out, err = authority(["evaluate", str(model), str(work / "banned"), "--innocent", str(work / "innocent"),
                                "--target-fpr", "0.5", "--report-dir", str(report), "--quiet"], capsys)
    assert code == 0, err
    data = json.loads((report / "report.json").read_text())
    fused, alone = data["suggested_fused"], data["suggested"]
    assert "chosen together, as publish calibrates by default" in out
    assert fused["measured_fpr"] <= fused["bound_fpr"] <= 0.5
    assert set(fused["recall"]["per_kind"]) == {"rotation", "overlay"} and alone["threshold"] >= 0
    assert 0 < fused["crops_hashes"] <= PER_IMAGE * 5
    assert len(data["held_out"]) == 2  # four innocent images, each its own group: calibrated on two, held out two
    assert [fold["held_out"][0] for fold in data["held_out"]] == [2, 2]
    assert "on the other 2 (2 groups)" in out
    assert "no thresholds keep the bound" not in out  # 2 images can promise 1/3, within 0.5
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    code, stdout, err = authority(["publish", str(model), str(work / "banned"), "--key",
                                   str(tmp_path / "keys" / "authority.key"), "--out", str(tmp_path / "b.vhb"),
                                   "--innocent", str(work / "innocent"), "--target-fpr", "0.5", "--json"], capsys)
    assert code == 0, err
    published = json.loads(stdout)
    assert {"network": published["threshold"], "crops": published["crops_threshold"],
            "dct": published["dct_threshold"]} == fused["thresholds"]
    assert fused["agree"] is None  # by default any hash near is a match: a signal agrees at its threshold
    assert {"network": published["agree"], "crops": published["crops_agree"],
            "dct": published["dct_agree"]} == fused["thresholds"]
    assert (published["crops_hashes"], published["format_version"]) == (fused["crops_hashes"], 5)
    assert published["calibration"]["bound_fpr"] == fused["bound_fpr"]
    levels = data["privacy"]["levels"]
    assert levels["max-recall"]["thresholds"] == fused["thresholds"]
    assert set(levels["balanced"]["thresholds"]) == {"network", "crops"}
    assert set(levels["strict"]["thresholds"]) == {"network"}
    code, stdout, err = authority(["publish", str(model), str(work / "banned"), "--key",
                                   str(tmp_path / "keys" / "authority.key"), "--out", str(tmp_path / "b.vhb"),
                                   "--innocent", str(work / "innocent"), "--target-fpr", "0.5", "--json",
                                   "--privacy", "strict"], capsys)
    assert code == 0 and json.loads(stdout)["threshold"] == levels["strict"]["thresholds"]["network"]
    assert "privacy levels (publish --privacy)" in out


def test_evaluate_says_when_a_held_out_half_cannot_promise_the_target(work: Path, model: Path, tmp_path: Path,
                                                                      capsys) -> None:
    """Two innocent images (each its own group) can promise no share below 1/3, so at a target of 0.2 each
    half's thresholds all come out at 0; the report says why instead of leaving the zeros unexplained."""
    code, out, err = authority(["evaluate", str(model), str(work / "banned"), "--innocent", str(work / "innocent"),
                                "--target-fpr", "0.2", "--report-dir", str(tmp_path / "report"), "--quiet"], capsys)
    assert code == 0, err
    reason = "no thresholds keep the bound within the 20.0% target on 2 images: it is never below 1/(N+1) = 33.3%"
    assert out.count(reason) == 2, out


def test_publish_chunked_and_a_delta_from_it(work: Path, model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """--chunked writes the whole list as a version 4 folder, its manifest carrying the bounded calibration;
    --delta-from it, after one banned image is replaced by another, resends only that image and removes the old
    one's id, on the first's sequence."""
    import shutil

    import numpy as np

    from vetohash.chunked import IMAGES, REMOVED, open_chunked
    from vetohash.modelfile import read_model
    from vetohash.preprocess import open_image

    monkeypatch.delenv("VETOHASH_PASSPHRASE", raising=False)
    authority(["keygen", "--out-dir", str(tmp_path / "keys")], capsys)
    public = read_public_key(tmp_path / "keys" / "authority.pub")
    trusted = {public.key_id: public}
    common = ["--key", str(tmp_path / "keys" / "authority.key"), "--innocent", str(work / "innocent"),
              "--target-fpr", "0.5", "--list-name", "big", "--json"]
    first = tmp_path / "big-1.vhb4"
    code, stdout, err = authority(["publish", str(model), str(work / "banned"), "--out", str(first), "--chunked",
                                   *common], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["format_version"], summary["base"], summary["hashes"]) == (4, None, 5)
    whole = open_chunked(first, trusted)
    # the manifest carries the calibration as a version 5 bundle would, its bound included
    assert whole.manifest.calibration is not None and whole.manifest.calibration.bounded
    chunk, = whole.image_chunks()
    assert len(chunk.ids) == 5 and chunk.dct is not None and chunk.crops is not None
    hasher, _ = read_model(model)
    pictures = sorted((work / "banned").glob("secret-name*"))
    expected = hasher.hash_images([open_image(path) for path in pictures])
    assert sorted(h.tobytes() for h in chunk.neural) == sorted(h.tobytes() for h in expected)

    week2 = tmp_path / "banned-2"
    week2.mkdir()
    for path in pictures[1:]:
        shutil.copy(path, week2 / path.name)
    write_pictures(week2, range(7, 8), prefix="new")
    second = tmp_path / "big-2.vhb4"
    code, stdout, err = authority(["publish", str(model), str(week2), "--out", str(second), "--delta-from", str(first),
                                   *common], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["format_version"], summary["base"], summary["added"], summary["removed"]) == \
        (4, whole.manifest.sequence, 1, 1)
    delta = open_chunked(second, trusted)
    assert delta.manifest.images == 5 and delta.manifest.count(IMAGES) == delta.manifest.count(REMOVED) == 1
    added, = delta.image_chunks()
    new = hasher.hash_images([open_image(path) for path in week2.glob("new*")])
    np.testing.assert_array_equal(added.neural, new)
    removed, = delta.removed_ids()
    # The replaced image's row: its network and DCT hashes both (the tiny model's network hashes can collide).
    from vetohash.dcthash import dct_hashes
    first_dct = dct_hashes([open_image(pictures[0])])[0]
    gone, = [i for i, n, d in zip(chunk.ids, chunk.neural, chunk.dct, strict=True)
             if n.tobytes() == expected[0].tobytes() and d.tobytes() == first_dct.tobytes()]
    assert removed == (gone,)

    code, _, err = authority(["publish", str(model), str(week2), "--out", str(tmp_path / "again.vhb4"),
                              "--delta-from", str(first), "--key", str(tmp_path / "keys" / "authority.key"),
                              "--list-name", "other"], capsys)
    assert code == 2 and "the delta's base is list 'big'" in err

