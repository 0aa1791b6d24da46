"""ctypes access to build/libpolymorph.so for the Python oracle tests.

The tests compare Polymorph against independent references (numpy,
ml_dtypes, the gguf package); this module only loads the library and
exposes small wrappers. POLYMORPH_BUILD selects the build folder."""
import ctypes
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"


class PmError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 1024)]


def load():
    """A new handle: ctypes keeps argtypes per handle, so each test module that
    declares its own structures loads its own (one shared handle let the last
    imported module's argtypes break the others' calls)."""
    lib = ctypes.CDLL(str(BUILD / "libpolymorph.so"))
    return lib


lib = load()
