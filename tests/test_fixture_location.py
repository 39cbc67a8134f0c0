"""Where the tests find the reference fixtures (conftest.locate_fixtures):
QA_CLIMS_FIXTURES, else ../shared/fixtures beside the clone, else tests/fixtures;
and the copy in the repository is the complete set its manifest lists."""
import hashlib

import pytest

from conftest import FIXTURES_ENV, REPO, locate_fixtures


def fixture_set(folder):
    (folder / 'reference').mkdir(parents=True)
    return folder


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A clone with its tests/fixtures, and nothing else, in an otherwise empty folder."""
    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    clone = tmp_path / 'clone'
    fixture_set(clone / 'tests' / 'fixtures')
    return clone


def test_the_copy_in_the_repository_is_used_when_nothing_else_exists(workspace):
    assert locate_fixtures(workspace) == workspace / 'tests' / 'fixtures'


def test_the_workspace_set_beside_the_clone_comes_before_the_copy(workspace):
    beside = fixture_set(workspace.parent / 'shared' / 'fixtures')
    assert locate_fixtures(workspace) == beside


def test_the_environment_variable_wins(workspace, monkeypatch):
    fixture_set(workspace.parent / 'shared' / 'fixtures')
    chosen = fixture_set(workspace.parent / 'elsewhere')
    monkeypatch.setenv(FIXTURES_ENV, str(chosen))
    assert locate_fixtures(workspace) == chosen


def test_a_folder_without_reference_does_not_count(workspace):
    (workspace.parent / 'shared' / 'fixtures').mkdir(parents=True)
    assert locate_fixtures(workspace) == workspace / 'tests' / 'fixtures'


def test_an_environment_variable_naming_no_set_is_an_error_not_a_fallback(workspace,
                                                                          monkeypatch):
    missing = workspace.parent / 'missing'
    monkeypatch.setenv(FIXTURES_ENV, str(missing))
    with pytest.raises(FileNotFoundError) as info:
        locate_fixtures(workspace)
    message = str(info.value)
    for place in (FIXTURES_ENV + '=' + str(missing), str(workspace.parent / 'shared' / 'fixtures'),
                  str(workspace / 'tests' / 'fixtures')):
        assert place in message


def test_no_set_anywhere_names_all_three_places(tmp_path, monkeypatch):
    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    clone = tmp_path / 'clone'
    clone.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        locate_fixtures(clone)
    message = str(info.value)
    for place in (FIXTURES_ENV, str(tmp_path / 'shared' / 'fixtures'),
                  str(clone / 'tests' / 'fixtures')):
        assert place in message


def test_the_copy_in_the_repository_matches_its_manifest():
    reference = REPO / 'tests' / 'fixtures' / 'reference'
    listed = {}
    for line in (reference / 'MANIFEST.sha256').read_text().splitlines():
        digest, name = line.split(None, 1)
        listed[name] = digest
    present = {p.relative_to(reference).as_posix() for p in reference.rglob('*') if p.is_file()}
    assert present - {'MANIFEST.sha256'} == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((reference / name).read_bytes()).hexdigest() == digest, name
    for tool in ('make_voc_mini.py', 'make_weights.py', 'det_npz.py'):
        assert (REPO / 'tests' / 'fixtures' / 'tools' / tool).is_file()
