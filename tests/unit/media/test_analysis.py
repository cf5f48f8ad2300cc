"""Measuring received audio: level, likeness to a reference, strongest frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from ringback.media.analysis import best_alignment, dominant_frequencies, rms_dbfs


def chirp(seconds: float, level: float = 0.4) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (level * 32767 * np.sin(2 * np.pi * (440 + 300 * t) * t)).astype(np.int16)


def test_rms_of_full_scale_square_and_silence() -> None:
    square = np.array([32767, -32768] * 400, np.int16)
    assert rms_dbfs(square) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(np.zeros(800, np.int16)) == -120.0
    assert rms_dbfs(np.zeros(0, np.int16)) == -120.0


def test_a_scaled_copy_later_in_the_received_audio_is_found_where_it_starts() -> None:
    reference = chirp(1.0)
    received = np.concatenate([np.zeros(2400, np.int16), reference // 4, np.zeros(800, np.int16)])
    found = best_alignment(received, reference)
    assert found is not None
    assert found.correlation == pytest.approx(1.0, abs=0.01)
    assert found.offset_s == pytest.approx(0.3)
    assert found.overlap_s == pytest.approx(1.0)


def test_received_audio_that_starts_inside_the_reference_has_a_negative_offset() -> None:
    reference = chirp(2.0)
    found = best_alignment(reference[4000:], reference)
    assert found is not None
    assert found.correlation == pytest.approx(1.0, abs=0.01)
    assert found.offset_s == pytest.approx(-0.5)


def test_unrelated_audio_and_tiny_overlaps_do_not_match() -> None:
    noise = np.random.default_rng(7).normal(0, 5000, 8000).astype(np.int16)
    found = best_alignment(chirp(1.0), noise)
    assert found is not None and found.correlation < 0.2
    # The last sample of one against the first of the other would be a perfect 1.0.
    spike = np.zeros(8000, np.int16)
    spike[-1] = 1000
    first = np.zeros(8000, np.int16)
    first[0] = 1000
    found = best_alignment(spike, first)
    assert found is not None and abs(found.correlation) < 1e-6
    assert best_alignment(np.zeros(0, np.int16), chirp(0.5)) is None


def test_the_strongest_frequencies_of_alternating_beeps() -> None:
    t = np.arange(1600) / 8000
    beeps = np.concatenate(
        [0.25 * 32767 * np.sin(2 * np.pi * f * t) for f in (1000, 1400)] + [np.zeros(1600)]
    )
    pcm = np.tile(beeps, 5).astype(np.int16)
    found = dominant_frequencies(pcm)
    assert {round(f) for f in found[:2]} == {1000, 1400}
    assert dominant_frequencies(np.zeros(8000, np.int16)) == []
