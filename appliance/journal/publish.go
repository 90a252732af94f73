package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firehose/firehose/appliance/topic"
)

// appendTimeout bounds one write. In-process writes take microseconds; a
// store that does not answer in this time is treated as failing, so a
// publisher's connection never hangs on the journal.
const appendTimeout = 2 * time.Second

// ErrNotJournaled wraps every reason a message could not be journaled.
var ErrNotJournaled = errors.New("not journaled")

// Append journals one message and returns its sequence number once the
// store has it (written to the kernel: a crash of the daemon loses nothing
// acknowledged; with fsync = "always" not even a crash of the host). The
// fan-out consumer delivers it afterwards, in journal order.
//
// An error means the message is not in the journal; it is counted, the
// journal reports itself degraded, and the caller decides what to tell the
// publisher. A gap marker is written before the next message that can be.
func (j *Journal) Append(t string, payload []byte, retain bool, qos byte) (uint64, error) {
	if err := j.health.ready(j); err != nil {
		j.health.lost(err)
		return 0, err
	}
	seq, err := j.write(t, payload, retain, qos)
	if err != nil {
		j.health.lost(err)
		return 0, err
	}
	return seq, nil
}

// Publish is Append for the appliance's own publishers (the Gerrit
// sources): a message the journal cannot take is delivered live only
// instead, so fan-out goes on while the disk is full. It never fails for
// the journal's sake; the loss is in status and in the next gap marker.
func (j *Journal) Publish(t string, payload []byte, retain bool, qos byte) error {
	if _, err := j.Append(t, payload, retain, qos); err != nil {
		j.DeliverLive(t, payload, retain, qos)
	}
	return nil
}

// DeliverLive hands a message that could not be journaled straight to the
// fan-out, without a sequence number.
func (j *Journal) DeliverLive(t string, payload []byte, retain bool, qos byte) {
	if d := j.deliver; d != nil {
		d(Message{Time: time.Now(), Topic: t, Payload: payload, Retain: retain, QoS: qos})
	}
}

func (j *Journal) write(t string, payload []byte, retain bool, qos byte) (uint64, error) {
	if !topic.ValidName(t) || t[0] == '$' {
		return 0, fmt.Errorf("%w: %w: %q is not a topic the journal keeps", ErrNotJournaled, errRefused, t)
	}
	subj := Subject(t, retain)
	if len(subj) > maxSubjectLen {
		return 0, fmt.Errorf("%w: %w: topic too long for the journal (%d bytes as a subject, at most %d)", ErrNotJournaled, errRefused, len(subj), maxSubjectLen)
	}
	if len(payload) > MaxPayload-1024 {
		return 0, fmt.Errorf("%w: %w: payload of %d bytes is over the journal's limit of %d", ErrNotJournaled, errRefused, len(payload), MaxPayload-1024)
	}
	m := &nats.Msg{Subject: subj, Data: payload, Header: nats.Header{hdrOrigin: []string{j.node}}}
	if qos > 0 {
		m.Header[hdrQoS] = []string{strconv.Itoa(int(qos))}
	}
	return j.publishMsg(m)
}

func (j *Journal) publishMsg(m *nats.Msg) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	id := j.msgIDPrefix + strconv.FormatUint(j.msgIDs.Add(1), 36)
	ack, err := j.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamName))
	if err != nil {
		// A store that fails to write does not answer; its log says why.
		if errors.Is(err, context.DeadlineExceeded) {
			if e, _ := j.storeErr.Load().(string); e != "" {
				return 0, fmt.Errorf("%w: no answer from the store within %s; it last said: %s", ErrNotJournaled, appendTimeout, e)
			}
		}
		return 0, fmt.Errorf("%w: %w", ErrNotJournaled, err)
	}
	return ack.Sequence, nil
}

// health tracks whether the journal can write. While it cannot, messages
// go out live only and are counted; the first write after that is a gap
// marker saying how many and when.
type health struct {
	mu      sync.Mutex
	failing bool
	since   time.Time // first loss of the current outage
	last    time.Time // latest loss
	count   int64     // losses in the current outage
	reason  string
	// storeBroken: the store has refused a write and refuses all writes
	// until JetStream is restarted (nats-server keeps a write error).
	storeBroken bool
	nextTry     time.Time

	totalLost int64
	gaps      int64
	lastGap   *Gap
	lastGapAt uint64

	recovering sync.Mutex // one recovery at a time
	stop       chan struct{}
	stopOnce   sync.Once
}

// lost records a message that could not be journaled.
func (h *health) lost(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if !h.failing {
		h.failing, h.since = true, now
	}
	h.last = now
	h.count++
	h.totalLost++
	if errors.Is(err, errFailing) {
		return // already known to be failing; keep the first reason
	}
	h.reason = strings.TrimPrefix(err.Error(), ErrNotJournaled.Error()+": ")
	if storeError(err) {
		h.storeBroken = true
	}
}

// errFailing is the quick refusal while the store is known to fail.
var errFailing = errors.New("the journal is failing")

// errRefused marks a refusal of one message (not a topic, too large),
// after which the next message may well be journaled; any other error is
// the store failing (disk full, I/O error, JetStream down).
var errRefused = errors.New("refused")

func storeError(err error) bool {
	if errors.Is(err, errRefused) {
		return false
	}
	var apiErr *jetstream.APIError
	return !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// recoverEvery paces attempts to reopen a failing store, so a flood of
// publishes does not turn into a flood of store restarts and log lines.
// minFree is the free space a full disk must regain first.
const (
	recoverEvery = 2 * time.Second
	minFree      = 8 << 20
)

// ready returns nil when the journal may write: it is healthy, or it was
// failing and has just written its gap marker. Otherwise it returns why
// not, cheaply.
func (h *health) ready(j *Journal) error {
	h.mu.Lock()
	if !h.failing {
		h.mu.Unlock()
		return nil
	}
	if h.storeBroken && time.Now().Before(h.nextTry) {
		reason := h.reason
		h.mu.Unlock()
		return fmt.Errorf("%w: %w: %s", ErrNotJournaled, errFailing, reason)
	}
	h.mu.Unlock()
	return j.recover()
}

// recover tries to write the gap marker; once it is written, the outage is
// over. A store that keeps a write error is restarted first.
func (j *Journal) recover() error {
	h := &j.health
	h.recovering.Lock()
	defer h.recovering.Unlock()
	h.mu.Lock()
	if !h.failing {
		h.mu.Unlock()
		return nil
	}
	h.nextTry = time.Now().Add(recoverEvery)
	broken := h.storeBroken
	gap := Gap{Lost: h.count, From: h.since.UTC(), Until: h.last.UTC(), Reason: h.reason}
	h.mu.Unlock()

	if broken {
		if free, err := diskFree(j.cfg.Dir); err == nil && free < minFree {
			return fmt.Errorf("%w: %w: %s (%d bytes free)", ErrNotJournaled, errFailing, gap.Reason, free)
		}
		if err := j.restartJetStream(); err != nil {
			return fmt.Errorf("%w: %w: %w", ErrNotJournaled, errFailing, err)
		}
	}
	body, _ := json.Marshal(gap)
	m := &nats.Msg{Subject: gapSubject, Data: body, Header: nats.Header{hdrOrigin: []string{j.node}}}
	seq, err := j.publishMsg(m)
	if err != nil {
		h.mu.Lock()
		h.storeBroken = h.storeBroken || storeError(err)
		h.mu.Unlock()
		return fmt.Errorf("%w: %w: %s", ErrNotJournaled, errFailing, gap.Reason)
	}
	h.mu.Lock()
	// Messages lost while the marker was being written are in the next one.
	h.count -= gap.Lost
	if h.count <= 0 {
		h.failing, h.storeBroken, h.count, h.reason = false, false, 0, ""
	} else {
		h.since = h.last
	}
	h.gaps++
	h.lastGap, h.lastGapAt = &gap, seq
	h.mu.Unlock()
	j.log.Warn("journal writing again; gap marker written", "seq", seq, "lost", gap.Lost, "from", gap.From, "until", gap.Until, "reason", gap.Reason)
	return nil
}

// restartJetStream reopens the store: nats-server keeps a write error
// (such as a full disk) and refuses every later write until then.
func (j *Journal) restartJetStream() error {
	if j.srv.JetStreamEnabled() {
		if err := j.srv.ShutdownJetStream(); err != nil {
			return err
		}
	}
	o := j.opts
	err := j.srv.EnableJetStream(&server.JetStreamConfig{
		StoreDir: o.StoreDir, SyncInterval: o.SyncInterval, SyncAlways: o.SyncAlways,
		MaxMemory: o.JetStreamMaxMemory, MaxStore: o.JetStreamMaxStore, Strict: true,
	})
	if err != nil {
		return fmt.Errorf("restarting the store: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return j.ensureStreams(ctx, j.cfg)
}

func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (j *Journal) stopHealth() {
	j.health.stopOnce.Do(func() {
		if j.health.stop != nil {
			close(j.health.stop)
		}
	})
}
