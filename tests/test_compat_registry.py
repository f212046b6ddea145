import subprocess
import sys

import pytest

from eegbench._check import InvalidInputError, UnknownNameError, check_option
from eegbench.registry import Registry


def test_timm_and_open_clip_import_after_eegbench():
    # A fresh interpreter: importing eegbench must make torchvision-dependent libraries importable.
    code = "import eegbench, timm, open_clip, torchvision; print(torchvision.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_import_eegbench_does_not_import_torch():
    code = "import sys, eegbench; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_registry_register_get_and_wildcards():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)

    @reg.register("beta_x")
    def beta():
        return 2

    assert reg.get("alpha") == 1
    assert reg.get("beta_x") is beta
    assert reg.names() == ["alpha", "beta_x"]
    assert reg.names("b*") == ["beta_x"]
    assert "alpha" in reg and len(reg) == 2


def test_registry_unknown_name_suggests_and_lists():
    reg: Registry[int] = Registry("widget", hint="Add one.")
    reg.register("shallow", 1)
    reg.register("final", 2)
    with pytest.raises(UnknownNameError, match=r"Unknown widget 'shalow'\. Did you mean 'shallow'\? "
                                               r"Valid widgets: final, shallow\. Add one\."):
        reg.get("shalow")


def test_registry_rejects_duplicates():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(InvalidInputError, match="registered twice"):
        reg.register("a", 2)


def test_check_option_lists_allowed_values():
    assert check_option("mode", "a", ["a", "b"]) == "a"
    with pytest.raises(InvalidInputError, match=r"Invalid value 'c' for mode\. Allowed values: 'a', 'b'\."):
        check_option("mode", "c", ["a", "b"])
