"""The public API is exactly what ``shopserve.__all__`` lists, sorted."""

import types

import shopserve


def test_all_is_sorted_and_complete() -> None:
    # Submodules become attributes of the package once imported anywhere; they are not API.
    public = sorted(name for name, value in vars(shopserve).items()
                    if not name.startswith("_") and not isinstance(value, types.ModuleType))
    assert shopserve.__all__ == sorted(shopserve.__all__)
    assert sorted(n for n in shopserve.__all__ if n != "__version__") == public
