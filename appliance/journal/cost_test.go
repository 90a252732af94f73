package journal

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/firehose/firehose/appliance/gerrit"
	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
)

// TestDiskCost journals 10,000 real Gerrit events (the shared samples,
// made distinct) and events padded to 4 KiB, and checks what each costs on
// disk beyond its payload: the subject, the headers and the store's record
// and index. `go test -v -run TestDiskCost` prints the figures the README
// quotes per million events.
func TestDiskCost(t *testing.T) {
	samples := gerrittest.ReadSamples(t, gerrittest.SamplesPath)
	for _, size := range []int{0, 4 << 10} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			dir := t.TempDir()
			j, _ := open(t, testConfig(dir))
			const n = 10000
			var payloadBytes int
			for i := range n {
				ev := bytes.Replace(samples[i%len(samples)], []byte(`"type"`), fmt.Appendf(nil, `"n":%d,"type"`, i), 1)
				if size > 0 && len(ev) < size {
					ev = append(ev[:len(ev)-1:len(ev)-1], fmt.Appendf(nil, `,"pad":"%s"}`, bytes.Repeat([]byte("x"), size-len(ev)-10))...)
				}
				tp, err := gerrit.Topic("gerrit", ev)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := j.Append(tp, ev, false, 0); err != nil {
					t.Fatal(err)
				}
				payloadBytes += len(ev)
			}
			j.Close()
			var onDisk, allocated int64
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				onDisk += info.Size()
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					allocated += st.Blocks * 512
				}
				return nil
			})
			perEvent := float64(onDisk) / n
			overhead := perEvent - float64(payloadBytes)/n
			t.Logf("%d events, average payload %.0f bytes: %d bytes in files (%d allocated), %.0f bytes per event (%.0f beyond the payload): %.2f GB per million events",
				n, float64(payloadBytes)/n, onDisk, allocated, perEvent, overhead, perEvent*1e6/1e9)
			if overhead > 400 {
				t.Errorf("%.0f bytes per event beyond the payload; subject, headers and record should stay under 400", overhead)
			}
		})
	}
}
