#!/usr/bin/env bash
# Rebuild src/ringback/media/audio/default-warning.wav (package data), the warning played when
# a court has not uploaded its own.
#
# Needs: espeak-ng (with espeak-ng-data), sox, ffmpeg.
# Usage: src/ringback/media/audio/make_default_warning.sh [OUT.wav]
#
# Voice note: espeak-ng 1.51's `cmn` voice ("latin as English") turns Hanzi into tone-numbered pinyin
# and then reads that pinyin as English ("nin two hao three"); `cmn-latn-pinyin` is the same Mandarin
# voice with Latin read as pinyin and is the one that actually speaks Mandarin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/default-warning.wav}"

zh_text='您好，您拨打的用户已被人民法院列入失信被执行人名单，请督促其尽快履行法律义务。'
en_text='Notice: the person you are calling has been listed by the court as a defaulting judgment debtor. Please urge them to fulfil their legal obligations.'

zh_voice='cmn-latn-pinyin'
en_voice='en-gb'
rate=8000
target_lufs=-16   # integrated loudness, EBU R128 / ITU-R BS.1770
target_tp=-1.5    # true-peak ceiling, dBTP

for tool in espeak-ng sox ffmpeg; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done
espeak-ng --voices=cmn | grep -q "$zh_voice" || { echo "error: espeak-ng voice $zh_voice missing" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# speak PART VOICE WPM TEXT: synthesise, take 6 dB off (so the filters cannot clip), trim edge
# silence, shorten pauses > 0.3 s,
# band-limit for the telephone channel and resample (sox's rate is properly anti-aliased).
speak() {
    espeak-ng -v "$2" -s "$3" -w "$work/$1-raw.wav" "$4"
    sox -D "$work/$1-raw.wav" -r "$rate" -c 1 -b 16 "$work/$1.wav" \
        gain -6 silence 1 0.02 -60d reverse silence 1 0.02 -60d reverse \
        silence -l 1 0.02 -60d -1 0.3 -60d \
        highpass 200 lowpass 3400 rate -v "$rate"
}
pad() { sox -D -n -r "$rate" -c 1 -b 16 "$work/$1.wav" trim 0 "$2"; }

speak zh "$zh_voice" 170 "$zh_text"
speak en "$en_voice" 175 "$en_text"
pad lead 0.1
pad gap 0.6
pad tail 0.2
sox -D "$work/lead.wav" "$work/zh.wav" "$work/gap.wav" "$work/en.wav" "$work/tail.wav" "$work/joined.wav"

# Two-pass loudnorm: measure, then apply in linear mode where possible (no pumping); the final
# resample back to 8 kHz and a -1 dB headroom check keep the sample peak below full scale.
measure="$(ffmpeg -hide_banner -nostats -i "$work/joined.wav" \
    -af "loudnorm=I=$target_lufs:TP=$target_tp:LRA=11:print_format=json" -f null - 2>&1 |
    sed -n '/^{/,/^}/p')"
field() { printf '%s\n' "$measure" | sed -n "s/.*\"$1\" *: *\"\\([^\"]*\\)\".*/\\1/p"; }
ffmpeg -hide_banner -nostats -loglevel error -y -i "$work/joined.wav" \
    -af "loudnorm=I=$target_lufs:TP=$target_tp:LRA=11:linear=true:measured_I=$(field input_i):measured_TP=$(field input_tp):measured_LRA=$(field input_lra):measured_thresh=$(field input_thresh):offset=$(field target_offset)" \
    -ar "$rate" -ac 1 -c:a pcm_s16le -map_metadata -1 -fflags +bitexact -flags:a +bitexact \
    "$work/norm.wav"

# Guarantee the sample peak: if resampling pushed it above -1 dBFS, bring it down.
peak_db="$(sox "$work/norm.wav" -n stats 2>&1 | awk '/^Pk lev dB/ {print $4}')"
if awk -v p="$peak_db" 'BEGIN { exit !(p > -1.0) }'; then
    sox -D "$work/norm.wav" "$work/final.wav" gain -n -1
else
    cp "$work/norm.wav" "$work/final.wav"
fi
mv "$work/final.wav" "$out"

echo "wrote $out"
sox --i "$out"
sox "$out" -n stats 2>&1 | grep -E 'Pk lev dB|RMS lev dB|Length s'
ffmpeg -hide_banner -nostats -i "$out" -af ebur128 -f null - 2>&1 | grep -E '^ +I:' | tail -1
