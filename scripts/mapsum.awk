# Sums the input sections a GNU ld map says the link kept, per archive
# member: "member text rodata data bss" (scripts/footprint.sh).
/^Discarded input sections/ { skip = 1 }
/^Linker script and memory map/ { skip = 0; next }
skip { next }
function add(sec, size, file,   m, k) {
  if (file !~ /\.a\(/) return
  m = file; sub(/^.*\(/, "", m); sub(/\)$/, "", m)
  size = hex(size)
  if (sec ~ /^\.text/) k = "t"; else if (sec ~ /^\.rodata/) k = "r"; else if (sec ~ /^\.data/) k = "d"; else if (sec ~ /^\.bss/) k = "b"; else return
  s[m, k] += size; seen[m] = 1
}
/^ \.(text|rodata|data|bss)/ {
  if (NF >= 4 && $2 ~ /^0x/) { add($1, $3, $4) } else if (NF == 1) { pend = $1 }
  next
}
pend != "" && /^ +0x/ { if (NF >= 3) add(pend, $2, $3); pend = ""; next }
{ pend = "" }
END { for (m in seen) printf "%s %d %d %d %d\n", m, s[m, "t"], s[m, "r"], s[m, "d"], s[m, "b"] }
function hex(s,   i, c, v) {
  v = 0; s = tolower(s); sub(/^0x/, "", s)
  for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
  return v
}
