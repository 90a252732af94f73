package journal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReadSurvivesLostDeliveries: a read's consumer acknowledges nothing,
// so messages it sent that never reached the reader are gone from its
// point of view (a pull that outlived the client's wait for it, on a busy
// machine). Here another client takes 50 of them from under the reader;
// the read must still hand over every message once, in order, alone and
// in a cluster.
func TestReadSurvivesLostDeliveries(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		j, _ := open(t, testConfig(t.TempDir()))
		checkReadSurvivesLostDeliveries(t, j, j)
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a three-node cluster")
		}
		js, _ := openCluster(t, 3)
		checkReadSurvivesLostDeliveries(t, js[0], js[1])
	})
}

func checkReadSurvivesLostDeliveries(t *testing.T, writer, reader *Journal) {
	const n = 1000
	for i := range n {
		if _, err := writer.Append("t/x", []byte(fmt.Sprint(i)), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []Message
	stolen := 0
	err := reader.fetch(ctx, StreamName, readerFilters("t/#"), From{Seq: 1}, 0, func(m jetstream.Msg) error {
		if len(got) == 0 {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			cons, err := reader.js().Consumer(ctx, StreamName, meta.Consumer)
			if err != nil {
				return err
			}
			b, err := cons.Fetch(50, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			for range b.Messages() {
				stolen++
			}
		}
		msg, ok := decode(m)
		if ok {
			got = append(got, msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stolen == 0 {
		t.Fatal("nothing was taken from under the reader: the test tests nothing")
	}
	if len(got) != n {
		t.Fatalf("read %d messages (%d taken from under it), want %d", len(got), stolen, n)
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) || string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d: seq %d %q", i, m.Seq, m.Payload)
		}
	}
}
