from mmrec.data.text import cap_text, clean_text, compose_text


def test_clean_text_unescapes_strips_tags_and_whitespace():
    assert clean_text("Toy &amp;amp; <b>Game</b>\n\t 2 &quot;x&quot;") == 'Toy & Game 2 "x"'
    assert clean_text(None) == ""
    assert clean_text([["Books", "Children&#39;s"], ["Books"]]) == "Books, Children's"
    assert clean_text(["a.", "<p>b</p>"], sep=" ") == "a. b"


def test_compose_skips_empty_fields_and_caps_at_word_boundary():
    text = compose_text({"title": "Red mug", "brand": "", "category": "Mugs"},
                        ["title", "brand", "category"], 100)
    assert text == "Red mug | Mugs"
    long = compose_text({"title": "word " * 50}, ["title"], 23)
    assert len(long) <= 23 and not long.endswith(" ")
    assert cap_text("abcdefghij", 4) == "abcd"
