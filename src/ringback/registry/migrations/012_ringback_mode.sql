-- Ringback mode (the warning plays while the debtor's phone rings): a court may choose it
-- (and when the caller is connected) over the deployment's default; proof of play says
-- which mode played, why the warning stopped and whether the call was answered.
ALTER TABLE courts
    ADD COLUMN call_mode text CHECK (call_mode IN ('redirect', 'ringback')),
    ADD COLUMN answer_after text CHECK (answer_after IN ('answer', 'first_play'));

ALTER TABLE announcements
    ADD COLUMN mode text NOT NULL DEFAULT 'redirect' CHECK (mode IN ('redirect', 'ringback')),
    ADD COLUMN stop_reason text,
    ADD COLUMN answered boolean;
