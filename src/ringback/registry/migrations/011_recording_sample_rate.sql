-- Recordings keep the court's upload in wideband (16 kHz) so G.722, AMR-WB and Opus callers
-- hear wideband audio; rows stored before this migration are 8 kHz and stay playable as they
-- are (the default below describes them).
ALTER TABLE recordings
    ADD COLUMN sample_rate integer NOT NULL DEFAULT 8000 CHECK (sample_rate IN (8000, 16000));
COMMENT ON COLUMN recordings.pcm IS 'what callers hear: mono s16le at sample_rate';
