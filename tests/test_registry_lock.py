"""Two domain changes at once: the registry is held for a whole change, so the second runs on the
first's result (or fails naming it), never on a copy read before the first saved."""

import fcntl
import threading
import time

import pytest

from vsa_ops.domains import RegistryError, registry_lock


def test_a_second_change_waits_for_the_first_and_fails_naming_it_when_it_waited_too_long(tmp_path):
    path = tmp_path / "domains.yml"
    said = []
    with registry_lock(path, "add-domain a.example.com"):
        with pytest.raises(RegistryError, match=r"^domains.yml is held by add-domain a.example.com \(pid \d+\); "
                                                r"nothing changed$"):
            with registry_lock(path, "add-domain b.example.com", echo=said.append, wait=0.3):
                pytest.fail("entered a held registry")
    assert said[0].startswith("waiting for add-domain a.example.com (pid ")
    with registry_lock(path, "add-domain b.example.com"):  # given back at the end of the first change
        assert "add-domain b.example.com" in (tmp_path / ".domains.yml.lock").read_text()


def test_the_registry_is_given_back_when_a_change_fails(tmp_path):
    path = tmp_path / "domains.yml"
    with pytest.raises(ValueError):
        with registry_lock(path, "add-domain a.example.com"):
            raise ValueError("deploy failed")
    with registry_lock(path, "add-domain b.example.com", wait=0):
        pass


def test_a_waiter_that_comes_before_the_holder_wrote_its_name_still_names_it(tmp_path):
    """The holder takes the lock, then writes its name: a waiter in between must not say "another process"."""
    path = tmp_path / "domains.yml"
    lock_path = tmp_path / ".domains.yml.lock"
    said = []
    with open(lock_path, "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)

        def name_then_release():
            time.sleep(0.3)
            holder.write("add-domain a.example.com (pid 1)\n")
            holder.flush()
            time.sleep(0.3)
            holder.seek(0)
            holder.truncate()
            fcntl.flock(holder, fcntl.LOCK_UN)

        thread = threading.Thread(target=name_then_release)
        thread.start()
        with registry_lock(path, "add-domain b.example.com", echo=said.append):
            pass
        thread.join()
    assert said == ["waiting for add-domain a.example.com (pid 1) to finish with domains.yml"]
