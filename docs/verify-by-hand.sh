#!/bin/sh
# verify-by-hand.sh — check (and decrypt) one recorder's sealed evidence with stock tools.
#
# This is docs/evidence-format.md done as a shell script: an expert, a court or a party can
# read it as a procedure and run it, with nothing from bodycam. It uses only:
#   openssl (3.0 or later)   signatures, X25519, HKDF, HMAC-SHA256, AES-256-CTR
#   sha256sum                SHA-256 of files
#   a POSIX shell and POSIX tools (od, tail, head -c, sed, grep, tr, cut, sort, wc, find,
#   mktemp, cp, mkdir, rm)
# No crypto library, no Python, no jq.
#
# Usage:
#   sh verify-by-hand.sh [-k AGENCY_KEY.pem] [-o PLAINTEXT_DIR] [-r DOCK_RECEIPT_KEY.pub.pem]
#                        [-t TSA_CA.pem] [-s ACTIVITY] EVIDENCE_DIR DEVICE_KEY.pub.pem
#
#   EVIDENCE_DIR   one recorder's evidence: in a dock's archive `archive/<device>/`, with its
#                  activity folders and its `chain/` folder of signed chain heads
#   DEVICE_KEY     that recorder's Ed25519 public key (PEM), from the dock's registry:
#                  `jq -j .public_key dock/devices/<device>.json > device.pub.pem`
#   -k             the agency's X25519 private key: also decrypt every encrypted file, check
#                  every chunk's tag and the plaintext hashes (section 3 of the document)
#   -o             write the decrypted plaintext there (needs -k)
#   -r             the dock's receipt key: also check the dock's signed receipt of every file
#   -t             the CA certificate of the time-stamping authority: also check the RFC 3161
#                  token over each chain head with `openssl ts -verify`
#   -s             one activity's copy (a long-term copy): the files of the items in folder
#                  ACTIVITY are checked; other folders hold only the manifests that link the
#                  activity to the device's signed chain head, checked for signature and chain
#
# It prints one line per check (OK / FAIL) and ends with ALL VERIFIED (exit 0) or NOT
# VERIFIED (exit 1). Exit 2: it could not start (a tool or an argument missing).
#
# Files of format version 1 (magic BCE1, AES-256-GCM, written before version 2) are
# reported as such: openssl's command line has no AEAD modes, so this script cannot open
# them; their stored bytes, signatures and chain are checked all the same, and
# `bodycam export` decrypts them.

set -u
LC_ALL=C
export LC_ALL

AGENCY= OUT= RECEIPT_KEY= TSA_CA= SCOPE=
while getopts k:o:r:t:s: opt; do
    case $opt in
        k) AGENCY=$OPTARG ;;
        o) OUT=$OPTARG ;;
        r) RECEIPT_KEY=$OPTARG ;;
        t) TSA_CA=$OPTARG ;;
        s) SCOPE=$OPTARG ;;
        *) echo "usage: $0 [-k AGENCY_KEY] [-o DIR] [-r RECEIPT_KEY] [-t TSA_CA] [-s ACTIVITY] EVIDENCE_DIR DEVICE_KEY" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: $0 [-k AGENCY_KEY] [-o DIR] [-r RECEIPT_KEY] [-t TSA_CA] [-s ACTIVITY] EVIDENCE_DIR DEVICE_KEY" >&2; exit 2; }
EVIDENCE=$1 DEVICE_KEY=$2
for tool in openssl sha256sum od tail head sed grep tr cut sort wc find mktemp cp mkdir rm; do
    command -v $tool >/dev/null 2>&1 || { echo "needs $tool" >&2; exit 2; }
done
[ -d "$EVIDENCE" ] || { echo "$EVIDENCE: not a directory" >&2; exit 2; }
[ -z "$OUT" ] || [ -n "$AGENCY" ] || { echo "-o needs -k (the agency key decrypts)" >&2; exit 2; }

WORK=$(mktemp -d) || exit 2
trap 'rm -rf "$WORK"' EXIT
FAILED=0
ok()   { echo "OK      $*"; }
fail() { echo "FAIL    $*"; FAILED=1; }

# --- small helpers ------------------------------------------------------------------------

# A string member of a canonical JSON object (one line, no whitespace): "key":"value".
str_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2" | head -n 1; }
# An integer member: "key":123.
int_field() { sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p" "$2" | head -n 1; }
# Bytes of a file as lowercase hex on one line: hex FILE OFFSET COUNT.
hex() { od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }
# Bytes of a file as decimal numbers: dec FILE OFFSET COUNT.
dec() { od -An -v -tu1 -j "$2" -N "$3" "$1"; }
# COUNT bytes of FILE from OFFSET (0-based), to stdout: slice FILE OFFSET COUNT.
slice() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }
# The integer $1 as 8 bytes, big-endian (written with printf's octal escapes).
u64() {
    printf "$(printf '\\%03o' $(($1 >> 56 & 255)) $(($1 >> 48 & 255)) $(($1 >> 40 & 255)) \
        $(($1 >> 32 & 255)) $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) \
        $(($1 & 255)))"
}
sha() { sha256sum "$1" | cut -d ' ' -f 1; }
size() { wc -c < "$1" | tr -d ' '; }

# --- 1. The device's key, and its key id (section 1) ------------------------------------

# The key id is the first 16 hex digits of the SHA-256 of the 32 raw key bytes, which are
# the last 32 bytes of the key's DER.
openssl pkey -pubin -in "$DEVICE_KEY" -outform DER > "$WORK/device.der" 2>/dev/null \
    || { echo "$DEVICE_KEY: not a public key" >&2; exit 2; }
tail -c 32 "$WORK/device.der" > "$WORK/device.raw"
DEVICE_KEY_ID=$(sha "$WORK/device.raw" | cut -c 1-16)
echo "device key id $DEVICE_KEY_ID"

if [ -n "$AGENCY" ]; then
    # The agency's public key, raw, and its key id: files name the key they are encrypted to.
    openssl pkey -in "$AGENCY" -pubout -outform DER 2>/dev/null | tail -c 32 > "$WORK/agency.raw"
    [ "$(size "$WORK/agency.raw")" = 32 ] || { echo "$AGENCY: not an X25519 private key" >&2; exit 2; }
    AGENCY_HEX=$(hex "$WORK/agency.raw" 0 32)
    AGENCY_KEY_ID=$(sha "$WORK/agency.raw" | cut -c 1-16)
    echo "agency key id $AGENCY_KEY_ID"
fi

# --- 3. An encrypted (.bce, version 2) file: header, keys, every chunk ------------------

# check_header FILE NAME DEVICE: 3.1 and 3.2; leaves the header in $WORK/header.json and
# its length in $hlen. Fails (returns 1) when the file is no version 2 .bce file.
check_header() {
    # 3.1: magic "BCE2", the header's length (u16), the header (canonical JSON).
    if [ "$(slice "$1" 0 4)" != BCE2 ]; then
        fail "$2: not a version 2 .bce file (magic $(hex "$1" 0 4))"; return 1
    fi
    set -- "$1" "$2" "$3" $(dec "$1" 4 2)
    hlen=$(($4 * 256 + $5))
    slice "$1" 6 "$hlen" > "$WORK/header.json"
    # 3.2: the header names the file and the device: a file renamed, or moved from another
    # item or device, says so here (its stored hash fails too, but this names the swap).
    if [ "$(str_field name "$WORK/header.json")" != "$2" ]; then
        fail "$2: its header names it $(str_field name "$WORK/header.json") (files exchanged or renamed)"
    fi
    if [ "$(str_field device "$WORK/header.json")" != "$3" ]; then
        fail "$2: its header names device $(str_field device "$WORK/header.json"), the manifest $3"
    fi
    if [ "$(str_field alg "$WORK/header.json")" != "X25519-HKDF-SHA256/AES-256-CTR+HMAC-SHA256" ]; then
        fail "$2: unknown algorithm $(str_field alg "$WORK/header.json")"; return 1
    fi
    return 0
}

# check_bce FILE NAME DEVICE COMPLETE CHUNKS PLAINTEXT_SHA256 PLAINTEXT_OUT
check_bce() {
    f=$1 name=$2 device=$3 complete=$4 chunks=$5 plain_sha=$6 plain_out=$7
    check_header "$f" "$name" "$device" || return 0
    [ -n "$AGENCY" ] || return 0
    if [ "$(str_field agency_key "$WORK/header.json")" != "$AGENCY_KEY_ID" ]; then
        fail "$name: encrypted to agency key $(str_field agency_key "$WORK/header.json"), not $AGENCY_KEY_ID"; return
    fi
    # 3.3: X25519 between the agency key and the file's ephemeral key (its raw 32 bytes in
    # the header, base64; made a DER public key with the fixed 12-byte prefix 302a3005...).
    { printf '\060\052\060\005\006\003\053\145\156\003\041\000'
      str_field ephemeral "$WORK/header.json" | openssl base64 -d -A; } > "$WORK/eph.der"
    EPH_HEX=$(tail -c 32 "$WORK/eph.der" | od -An -v -tx1 | tr -d ' \n')
    SHARED=$(openssl pkeyutl -derive -inkey "$AGENCY" -peerkey "$WORK/eph.der" -peerform DER \
        2>/dev/null | od -An -v -tx1 | tr -d ' \n')
    if [ ${#SHARED} -ne 64 ]; then fail "$name: X25519 with the ephemeral key fails"; return; fi
    # HKDF-SHA256, 64 bytes: salt = ephemeral ‖ agency (raw), info = the ASCII string below.
    # openssl kdf prints colon-separated upper-case hex: drop the colons. The first 32
    # bytes are the AES-256 key, the last 32 the HMAC key.
    OKM=$(openssl kdf -keylen 64 -kdfopt digest:SHA256 -kdfopt "hexkey:$SHARED" \
        -kdfopt "hexsalt:$EPH_HEX$AGENCY_HEX" -kdfopt "info:bodycam evidence file keys v2" HKDF \
        | tr -d ':\n')
    ENC_KEY=$(echo "$OKM" | cut -c 1-64)
    MAC_KEY=$(echo "$OKM" | cut -c 65-128)
    # 3.4: walk the chunks. Each: u32 length L, u64 written-at, u8 flags, L bytes of
    # ciphertext, 32 bytes of tag. The tag is HMAC-SHA256 over the file's first 6+H bytes,
    # the chunk's index (u64), its 13 head bytes and its ciphertext.
    total=$(size "$f") pos=$((6 + hlen)) i=0 final=0 bad=0
    : > "$WORK/plain"
    while [ $pos -lt $total ]; do
        if [ $final -eq 1 ]; then fail "$name: chunk $i follows the final chunk"; bad=1; break; fi
        if [ $((pos + 13)) -gt $total ]; then fail "$name: stray bytes at $pos"; bad=1; break; fi
        set -- $(dec "$f" $pos 13)
        len=$(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 ))
        flags=${13}
        if [ $((pos + 13 + len + 32)) -gt $total ]; then fail "$name: chunk $i runs past the end of the file"; bad=1; break; fi
        tag=$( { slice "$f" 0 $((6 + hlen)); u64 $i; slice "$f" $pos $((13 + len)); } \
            | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$MAC_KEY" | sed 's/.*= //')
        if [ "$tag" != "$(hex "$f" $((pos + 13 + len)) 32)" ]; then
            fail "$name: chunk $i at byte $pos fails its tag (altered, moved, or from another file)"; bad=1; break
        fi
        # AES-256-CTR; the counter starts at i (8 bytes) followed by 8 zero bytes.
        slice "$f" $((pos + 13)) $len | openssl enc -d -aes-256-ctr -K "$ENC_KEY" \
            -iv "$(printf '%016x0000000000000000' $i)" >> "$WORK/plain"
        final=$((flags & 1))
        pos=$((pos + 13 + len + 32)) i=$((i + 1))
    done
    [ $bad -eq 0 ] || return
    [ "$i" = "$chunks" ] || fail "$name: $i chunks, the manifest says $chunks"
    if [ "$complete" = true ] && [ $final -ne 1 ]; then
        fail "$name: no final chunk (cut short after it was sealed)"; return
    fi
    if [ -n "$plain_sha" ] && [ "$(sha "$WORK/plain")" != "$plain_sha" ]; then
        fail "$name: the decrypted content does not match the manifest"; return
    fi
    ok "$name: $i chunks authenticated and decrypted$( [ $final -eq 1 ] && echo ', final chunk present')"
    [ -z "$plain_out" ] || cp "$WORK/plain" "$plain_out"
}

# The dock's receipt of a file (section 7): canonical JSON beside it, signed by the dock.
check_receipt() {
    r=$1.receipt.json
    if [ ! -f "$r" ] || ! openssl pkeyutl -verify -pubin -inkey "$RECEIPT_KEY" -rawin -in "$r" \
            -sigfile "$1.receipt.sig" >/dev/null 2>&1; then
        fail "${1##*/}: no receipt signed by the dock"; return
    fi
    [ "$(str_field sha256 "$r")" = "$(sha "$1")" ] || fail "${1##*/}: the receipt names other bytes"
}

# --- 4. Every manifest: signature, signer, files -----------------------------------------

: > "$WORK/chain"
find "$EVIDENCE" -name '*.manifest.json' | sort > "$WORK/manifests"
[ -s "$WORK/manifests" ] || fail "no manifest under $EVIDENCE"
DEVICE=
while read -r m; do
    dir=${m%/*} base=${m##*/} stem=${m%.manifest.json}
    # 4.4: the Ed25519 signature over the manifest's exact bytes.
    if ! openssl pkeyutl -verify -pubin -inkey "$DEVICE_KEY" -rawin -in "$m" \
            -sigfile "$stem.manifest.sig" >/dev/null 2>&1; then
        fail "$base: signature does not verify (altered, or not this device's)"; continue
    fi
    # 4.5 step 3: signed by this key, for this device.
    [ "$(str_field signing_key "$m")" = "$DEVICE_KEY_ID" ] || fail "$base: names another signing key"
    device=$(str_field device "$m")
    [ -n "$DEVICE" ] || DEVICE=$device
    [ "$device" = "$DEVICE" ] || fail "$base: device $device among $DEVICE's evidence"
    seq=$(int_field sequence "$m")
    echo "$seq $m" >> "$WORK/chain"
    ok "$base: signature (chain position $seq)"
    # A long-term copy of one activity: the items around it are there as manifests only.
    if [ -n "$SCOPE" ] && [ "${dir##*/}" != "$SCOPE" ]; then continue; fi
    # 4.5 step 5: each file record (the "files" array, one object per line here).
    sed 's/.*"files":\[//; s/\].*//' "$m" | tr '}' '\n' > "$WORK/records"
    while read -r record; do
        echo "$record" > "$WORK/record"
        name=$(str_field name "$WORK/record")
        [ -n "$name" ] || continue
        case $name in */*|..) fail "$base: file name $name is not a plain name"; continue ;; esac
        f=$dir/$name
        if [ ! -f "$f" ]; then fail "$name: missing (sealed by $base)"; continue; fi
        if [ "$(size "$f")" != "$(int_field stored_bytes "$WORK/record")" ] \
                || [ "$(sha "$f")" != "$(str_field stored_sha256 "$WORK/record")" ]; then
            fail "$name: stored bytes differ from the manifest (altered, exchanged or cut)"
            case $record in *'"encrypted":true'*) check_header "$f" "$name" "$device" ;; esac
            continue
        fi
        ok "$name: stored bytes (SHA-256 $(str_field stored_sha256 "$WORK/record" | cut -c 1-16)…)"
        if [ -n "$RECEIPT_KEY" ]; then check_receipt "$f"; fi
        case $record in *'"encrypted":true'*) ;; *)
            [ -z "$OUT" ] || { mkdir -p "$OUT/${dir##*/}" && cp "$f" "$OUT/${dir##*/}/"; }
            continue ;;
        esac
        plain_out=
        [ -z "$OUT" ] || { mkdir -p "$OUT/${dir##*/}"; plain_out=$OUT/${dir##*/}/${name%.bce}; }
        complete=false
        case $record in *'"complete":true'*) complete=true ;; esac
        check_bce "$f" "$name" "$device" $complete "$(int_field chunks "$WORK/record")" \
            "$(str_field plaintext_sha256 "$WORK/record")" "$plain_out"
    done < "$WORK/records"
done < "$WORK/manifests"

# --- 4.5 step 7: the chain, in sequence order -------------------------------------------

sort -n "$WORK/chain" > "$WORK/chain.sorted"
prev_seq= prev_hash=
LAST_SEQ=0 LAST_HASH=
while read -r seq m; do
    link=$(str_field prev "$m")
    if [ -z "$prev_seq" ]; then
        if [ "$seq" = 1 ] && [ "$link" != 0000000000000000000000000000000000000000000000000000000000000000 ]; then
            fail "#1 does not start from genesis"
        fi
        [ "$seq" = 1 ] || echo "NOTE    the chain here starts at sequence $seq"
    elif [ "$seq" = "$prev_seq" ]; then
        fail "#$seq: sequence number claimed twice"
    elif [ "$seq" != $((prev_seq + 1)) ]; then
        fail "sequence $((prev_seq + 1))-$((seq - 1)) absent from the chain (items removed)"
    elif [ "$link" != "$prev_hash" ]; then
        fail "#$seq: its prev is not the SHA-256 of #$prev_seq (items exchanged)"
    fi
    prev_seq=$seq prev_hash=$(sha "$m")
    LAST_SEQ=$seq LAST_HASH=$prev_hash
done < "$WORK/chain.sorted"
[ -z "$prev_seq" ] || ok "chain links up to sequence $LAST_SEQ, head $LAST_HASH"

# --- 7. Completeness: the device's signed chain heads -------------------------------------

# At every docking the device signs the sequence number and SHA-256 of the last manifest
# it sealed. The newest items of a chain are not pointed at by anything in the chain; the
# highest head the device signed is what they must reach.
HEAD_SEQ=0 HEAD=
for h in $(find "$EVIDENCE" -name '*.chainhead.json' | sort); do
    if ! openssl pkeyutl -verify -pubin -inkey "$DEVICE_KEY" -rawin -in "$h" \
            -sigfile "${h%.json}.sig" >/dev/null 2>&1; then
        fail "${h##*/}: chain head signature does not verify"; continue
    fi
    [ "$(str_field signing_key "$h")" = "$DEVICE_KEY_ID" ] || { fail "${h##*/}: names another key"; continue; }
    s=$(int_field sequence "$h")
    if [ "$s" -ge "$HEAD_SEQ" ]; then HEAD_SEQ=$s HEAD=$(str_field head "$h"); fi
    if [ -n "$TSA_CA" ]; then
        # 8: the RFC 3161 token over the head's bytes, from the dock's time-stamping authority.
        if [ -f "${h%.json}.tsr" ] && openssl ts -verify -data "$h" -in "${h%.json}.tsr" \
                -CAfile "$TSA_CA" >/dev/null 2>&1; then
            ok "${h##*/}: time-stamp token verifies ($(openssl ts -reply -in "${h%.json}.tsr" -text 2>/dev/null | sed -n 's/^Time stamp: //p'))"
        else
            fail "${h##*/}: no valid time-stamp token"
        fi
    fi
done
if [ -z "$HEAD" ]; then
    fail "no signed chain head: completeness cannot be shown"
elif [ "$HEAD_SEQ" -gt "$LAST_SEQ" ]; then
    fail "the device signed chain head #$HEAD_SEQ, the evidence ends at #$LAST_SEQ: the newest items were removed"
elif [ "$(grep -c "^$HEAD_SEQ " "$WORK/chain.sorted")" -ne 1 ] \
        || [ "$(sha "$(sed -n "s/^$HEAD_SEQ //p" "$WORK/chain.sorted")")" != "$HEAD" ]; then
    fail "the manifest at #$HEAD_SEQ is not the one the device's chain head names"
else
    ok "signed chain head #$HEAD_SEQ matches the manifest at that position"
fi

if [ $FAILED -eq 0 ]; then echo "ALL VERIFIED"; exit 0; fi
echo "NOT VERIFIED"; exit 1
