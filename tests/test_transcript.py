"""The call transcript as a typed record stores the JSON the console and older records have."""

from core.transcript import PROBLEM, Transcript, Utterance

STORED = {"utterances": [{"step": "problem", "text": "厨房漏水", "keys": "", "start": 1.5, "end": 3.0,
                          "words": [{"word": "厨房", "start": 1.5, "end": 2.0, "conf": 0.9}]},
                         {"step": "address", "text": "", "keys": "1101", "words": [], "start": 4.0, "end": 5.0}],
          "confirmed": ["address", "summary"]}


def test_a_stored_transcript_reads_and_writes_back_the_same_json():
    transcript = Transcript.from_json(STORED)
    words = STORED["utterances"][0]["words"]
    assert transcript.of_step(PROBLEM) == [Utterance("problem", "厨房漏水", "", words, 1.5, 3.0)]
    assert transcript.to_json() == STORED


def test_a_transcript_without_confirmations_stores_none():
    assert Transcript([Utterance("rating", keys="1")]).to_json() == {
        "utterances": [{"step": "rating", "text": "", "keys": "1", "words": [], "start": 0.0, "end": 0.0}]}


def test_a_cleared_transcript_is_empty():
    assert Transcript.from_json(None).utterances == [] and Transcript.from_json({}).of_step(PROBLEM) == []
