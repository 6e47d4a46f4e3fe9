#!/bin/sh
# Regenerates the spoken-Arabic clips of the waiting-room display (issue #15.9): the
# words "ticket" and "to counter", the names of the ticket letters A-Z as they are said
# in Arabic, and the number words the display composes 0-9999 from (units, teens, tens,
# hundreds, thousands, and the same with the "and" prefix, "wa-").
#
# Needs Debian's espeak-ng, sox and opus-tools:
#     apt-get install -y espeak-ng sox opus-tools
# Run from anywhere: sh node/assets/speech/generate.sh
#
# Each clip is mono 16 kHz speech, trimmed of silence, Opus at 16 kbit/s in Ogg (about
# 260 KB for all 105). The node builds them into its binary (node/src/web/display_speech.rs);
# the list of names there and the files here must match (a unit test checks it).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# clip NAME TEXT: speaks TEXT (Arabic text, digits, or [[phonemes]]) into NAME.opus.
clip() {
    espeak-ng -v ar -s 150 -w "$tmp/raw.wav" "$2"
    # Trim leading and trailing silence; downmix and resample for speech.
    sox -R "$tmp/raw.wav" -c 1 -r 16000 "$tmp/clip.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
    opusenc --quiet --speech --bitrate 16 --serial 1 --discard-comments \
        "$tmp/clip.wav" "$1.opus"
}

# The phonemes espeak-ng itself gives for a number written in digits (its Arabic number
# reading is right, its reading of undiacritised number words is not).
phonemes() {
    espeak-ng -v ar -q -x "$1" | tr -d '\n' | sed 's/^ *//; s/ *$//'
}

# The phrases.
clip ticket "[[?att,aDk'iRa]]"        # at-tadhkira: "ticket"
clip to_counter "[[?'ila SSubb'a:k]]"  # ila sh-shubbak: "to counter"

# Ticket letters: the Latin letter printed on the ticket, named the way it is read aloud
# in Syria (bi, si, di ...).
for pair in a:"?'i:h" b:"b'i:" c:"s'i:" d:"d'i:" e:"?'i:" f:"?'if" g:"dZ'i:" h:"?'itS" \
    i:"?'a:j" j:"dZ'a:j" k:"k'i:h" l:"?'il" m:"?'im" n:"?'in" o:"?'o:" p:"p'i:" \
    q:"k'ju:" r:"?'a:r" s:"?'is" t:"t'i:" u:"j'u:" v:"v'i:" w:"d'abilju:" x:"?'iks" \
    y:"w'a:j" z:"z'ed"; do
    clip "letter_${pair%%:*}" "[[${pair#*:}]]"
done

# Numbers: the words a number 0-9999 is read with, and each with "wa-" ("and") before it.
clip n0 0
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 \
    20 30 40 50 60 70 80 90 100 200 300 400 500 600 700 800 900; do
    clip "n$n" "$n"
    clip "and_n$n" "[[wa$(phonemes "$n")]]"
done
clip n1000 1000
clip n2000 2000
clip thousands "[[?a:l'a:f]]"          # alaf: "thousands", after 3-10
clip thousand_acc "[[?alf'an]]"       # alfan: "thousand", after 11-99

du -ch ./*.opus | tail -1
