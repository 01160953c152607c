import pytest

# support.py holds fixture code with asserts; have pytest explain them when they fail.
pytest.register_assert_rewrite(f"{__name__}.support")
