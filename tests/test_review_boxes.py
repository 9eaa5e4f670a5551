"""Where a station's OCR left text out, as the page viewer gets it
(server/archive/review.py `unread_boxes`): fractions of the page, from decisions a station
wrote — and decisions are the station's word, so a malformed record shows nothing rather than
failing the page."""

from __future__ import annotations

from typing import Any

from server.archive import review


def _decisions(**unread: Any) -> dict[str, Any]:
    record = {"checked": True, "image_size": [2000, 1000], "boxes": [[200, 100, 400, 50]]}
    return {"quality": {"score": 80.0, "reasons": ["unread_text"]}, "unread_text": record | unread}


def test_boxes_are_fractions_of_the_page_the_station_read() -> None:
    assert review.unread_boxes(_decisions()) == [
        {"left": 0.1, "top": 0.1, "width": 0.2, "height": 0.05}
    ]


def test_after_a_second_reading_the_boxes_still_unread_are_shown() -> None:
    reread = {"inserted": 1, "boxes_after": [[1000, 500, 100, 40]]}
    boxes = review.unread_boxes(_decisions(reread=reread))
    assert boxes == [{"left": 0.5, "top": 0.5, "width": 0.05, "height": 0.04}]
    assert review.unread_boxes(_decisions(reread={"inserted": 0})) == review.unread_boxes(
        _decisions()
    )  # read again without finding words: the first check's boxes


def test_boxes_are_shown_only_when_text_left_unread_is_why_the_page_is_reviewed() -> None:
    assert review.judged_text(_decisions())["unread_boxes"]
    quiet = _decisions()
    quiet["quality"]["reasons"] = ["low_score"]  # a little unread, as on most pages
    judged = review.judged_text(quiet)
    assert judged["unread_boxes"] == [] and judged["quality_reasons"] == ["low_score"]


def test_a_record_without_the_image_s_size_shows_no_boxes() -> None:
    """Agents before the sixteenth sitting kept the boxes without their frame."""
    for size in (None, [], [2000], [0, 1000], [True, 1000], ["2000", 1000], [2000, -1]):
        assert review.unread_boxes(_decisions(image_size=size)) == [], size
    assert review.unread_boxes({"unread_text": "boxes"}) == []
    assert review.unread_boxes({}) == []


def test_malformed_boxes_are_left_out_and_boxes_off_the_page_are_cut_to_it() -> None:
    boxes = [
        [200, 100, "400", 50],
        [200, 100, float("nan"), 50],
        [True, 100, 400, 50],
        [200, 100, 400],
        {"x": 1},
        [1900, 950, 400, 100],  # runs off the page's corner
        [-100, -100, 50, 50],  # wholly off the page
        [300, 200, 0, 50],  # no width
    ]
    assert review.unread_boxes(_decisions(boxes=boxes)) == [
        {"left": 0.95, "top": 0.95, "width": 0.05, "height": 0.05}
    ]
    assert review.unread_boxes(_decisions(boxes="[[1, 2, 3, 4]]")) == []


def test_no_more_boxes_than_a_station_keeps() -> None:
    many = [[10 * i, 10, 5, 5] for i in range(100)]
    assert len(review.unread_boxes(_decisions(boxes=many))) == review.UNREAD_BOXES_SHOWN


def test_a_page_turned_a_quarter_is_said_to_be_sideways_and_no_other() -> None:
    for turn, sideways in ((90, True), (270, True), (180, False), (0, False), (True, False)):
        decisions = {"orientation": {"turn_cw": turn}}
        assert review.judged_text(decisions)["turned_sideways"] is sideways, turn
    assert review.judged_text({"orientation": "90"})["turned_sideways"] is False
    assert review.judged_text({})["turned_sideways"] is False
