"""`attributes_set`: the set-and-restore behind a model's temporary states."""

import types

import pytest

from xmeta.scoped import attributes_set


def test_attributes_are_set_inside_and_restored_after_nested_blocks_and_errors():
    obj = types.SimpleNamespace(lang=None, centre=1)
    with attributes_set(obj, lang="yo", centre=2):
        assert (obj.lang, obj.centre) == ("yo", 2)
        with attributes_set(obj, lang="ig"):
            assert (obj.lang, obj.centre) == ("ig", 2)
        assert obj.lang == "yo"
        with pytest.raises(RuntimeError), attributes_set(obj, centre=3):
            raise RuntimeError("inner loop failed")
        assert obj.centre == 2
    assert (obj.lang, obj.centre) == (None, 1)
