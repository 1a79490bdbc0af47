"""The public API is exactly what ``shopserve.__all__`` lists, sorted."""

import shopserve


def test_all_is_sorted_and_complete() -> None:
    exported = [name for name in dir(shopserve) if not name.startswith("_")]
    modules = {"errors", "types", "config", "runtime", "registry", "data", "models", "optimize",
               "serve", "batch", "bundle", "drill", "monitor", "tune", "cli", "testing"}
    public = sorted(n for n in exported if n not in modules)
    assert shopserve.__all__ == sorted(shopserve.__all__)
    assert sorted(n for n in shopserve.__all__ if n != "__version__") == public
