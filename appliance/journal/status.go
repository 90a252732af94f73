package journal

import (
	"context"
	"fmt"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// Status reports the journal's span, size and health.
func (j *Journal) Status() *apitype.JournalStatus {
	st := &apitype.JournalStatus{Node: j.node, EventsPerMinute: j.EventsPerMinute()}
	timeout := 5 * time.Second
	if j.cl != nil {
		// Without quorum nothing answers; status must not hang on it.
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := j.Bounds(ctx)
	if err == nil {
		st.FirstSeq, st.LastSeq, st.Messages, st.Bytes = b.FirstSeq, b.LastSeq, b.Messages, b.Bytes
		st.FirstTime, st.LastTime = timePtr(b.FirstTime), timePtr(b.LastTime)
	}
	if s, rerr := j.js().Stream(ctx, RetainedStreamName); rerr == nil {
		st.Retained = s.CachedInfo().State.NumSubjects
	}
	if j.cl != nil {
		j.cl.mu.Lock()
		st.Writing = j.cl.quorum && j.cl.lowDisk == ""
		if !j.cl.quorum {
			st.FailingSince, st.LastError = timePtr(j.cl.lostSince), j.cl.lastErr
		} else if j.cl.lowDisk != "" {
			st.FailingSince, st.LastError = timePtr(j.cl.lowDiskSince), j.cl.lowDisk
		}
		j.cl.mu.Unlock()
		return st
	}
	h := &j.health
	h.mu.Lock()
	defer h.mu.Unlock()
	st.Writing = !h.failing
	if h.failing {
		st.FailingSince = timePtr(h.since)
		st.LastError = h.reason
	} else if err != nil {
		st.LastError = err.Error()
	}
	st.NotJournaled, st.Gaps = h.totalLost, h.gaps
	if g := h.lastGap; g != nil {
		st.LastGap = &apitype.JournalGap{Seq: h.lastGapAt, Lost: g.Lost, From: g.From, Until: g.Until, Reason: g.Reason}
	}
	return st
}

// Problems returns a sentence when the journal cannot write.
func (j *Journal) Problems() []string {
	if j.cl != nil {
		return j.clusterProblems()
	}
	h := &j.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failing {
		return nil
	}
	return []string{fmt.Sprintf("journal: cannot write since %s (%s): %d messages went out live only, not journaled; a gap marker will record them",
		h.since.UTC().Format(time.RFC3339), h.reason, h.count)}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// ClusterStatus reports the cluster; nil for an appliance that stands
// alone.
func (j *Journal) ClusterStatus() *apitype.ClusterStatus {
	if j.cl == nil {
		return nil
	}
	return j.clusterStatus()
}
