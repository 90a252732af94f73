package journal

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountTmpfs mounts a small tmpfs for a test that fills a disk; it needs
// root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("filling a disk needs a tmpfs, which needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "journal-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestDiskFullStoreWriteError(t *testing.T) {
	dir := mountTmpfs(t, "24m")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(filepath.Join(dir, "journal"))
	// No reserve: the store itself runs into the full disk and keeps its
	// write error until the journal restarts it.
	j, s := openWith(t, cfg, func(j *Journal) { j.reserve = 0 })
	payload := make([]byte, 16<<10)
	var journaled uint64
	lost := 0
	for i := 0; lost < 5; i++ {
		if i > 2000 {
			t.Fatal("the disk never filled")
		}
		seq, err := j.Append("big/x", payload, false, 0)
		if err != nil {
			if !errors.Is(err, ErrNotJournaled) {
				t.Fatalf("error %v does not say the message was not journaled", err)
			}
			lost++
			j.Publish("big/x", payload, false, 0) // the Gerrit path: live only
			lost++
			continue
		}
		if lost > 0 {
			t.Fatalf("journaled seq %d after a loss while the disk is still full", seq)
		}
		journaled = seq
	}
	if p := j.Problems(); len(p) != 1 {
		t.Fatalf("problems = %q", p)
	}
	if st := j.Status(); st.Writing || st.NotJournaled != int64(lost) {
		t.Fatalf("status = %+v", st)
	}
	waitFor(t, "the live-only message", func() bool {
		for _, m := range s.snapshot() {
			if m.Seq == 0 {
				return true
			}
		}
		return false
	})

	// Room again: the journal writes a gap marker, then goes on.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal to write again", func() bool { return len(j.Problems()) == 0 })
	seq, err := j.Append("big/x", []byte("after"), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := j.Status()
	if st.Gaps != 1 || st.LastGap == nil || st.LastGap.Lost != int64(lost) || st.LastGap.Seq != journaled+1 || seq != journaled+2 {
		t.Fatalf("after recovery: seq %d, journaled before %d, status %+v gap %+v", seq, journaled, st, st.LastGap)
	}
	waitFor(t, "the fan-out to go on after the store restarted", func() bool {
		msgs := s.snapshot()
		return len(msgs) > 0 && msgs[len(msgs)-1].Seq == seq
	})
	if !strings.Contains(st.LastGap.Reason, "no space left on device") {
		t.Errorf("gap reason = %q", st.LastGap.Reason)
	}
	var gap *Gap
	err = j.History(context.Background(), "big/#", From{Seq: journaled}, 0, func(m Message) error {
		if m.Gap != nil {
			gap = m.Gap
		}
		return nil
	})
	if err != nil || gap == nil || gap.Lost != int64(lost) {
		t.Fatalf("gap marker in history = %+v, %v", gap, err)
	}
}

// TestDiskNearlyFull: the journal stops writing while the disk has less
// than its reserve free, before the store fails, and goes on with a gap
// marker once there is room.
func TestDiskNearlyFull(t *testing.T) {
	dir := mountTmpfs(t, "24m")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	j, _ := open(t, testConfig(filepath.Join(dir, "journal")))
	payload := make([]byte, 16<<10)
	var lastSeq uint64
	for i := 0; ; i++ {
		if i > 2000 {
			t.Fatal("the disk never filled")
		}
		seq, err := j.Append("big/x", payload, false, 0)
		if err != nil {
			if !strings.Contains(err.Error(), "disk nearly full") {
				t.Fatalf("error = %v", err)
			}
			break
		}
		lastSeq = seq
	}
	if free, _ := diskFree(dir); free < 4<<20 {
		t.Errorf("the journal left only %d bytes free", free)
	}
	if p := j.Problems(); len(p) != 1 || !strings.Contains(p[0], "disk nearly full") {
		t.Fatalf("problems = %q", p)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the journal to write again", func() bool { return len(j.Problems()) == 0 })
	if st := j.Status(); st.LastGap == nil || st.LastGap.Seq != lastSeq+1 || st.LastGap.Lost != 1 {
		t.Fatalf("status = %+v", st)
	}
}
