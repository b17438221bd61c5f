// Package bootslot keeps the A/B boot entries of systemd-boot on the EFI
// system partition: it names, writes, selects and blesses them.
//
// Each slot x ("a" or "b") has one Type #1 entry, loader/entries/slot-x.conf
// once blessed, or slot-x+LEFT-DONE.conf while it is on trial (systemd-boot
// boot counting, https://systemd.io/AUTOMATIC_BOOT_ASSESSMENT/). Before it
// boots an entry with tries left, systemd-boot renames it with LEFT-1 and
// DONE+1 and puts the new name in the LoaderBootCountPath EFI variable; an
// entry with no tries left sorts after every other entry, so the firmware
// falls back to the other slot by itself. The running system blesses the
// booted entry after its health check by dropping the counter from the name,
// which is all systemd-bless-boot does too.
//
// A slot's kernel lives at /x/vmlinuz on the same partition, its root file
// system on the GPT partition labelled root-x.
package bootslot
