package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/coffer-backup/coffer/engine"
)

// progressWanted says live progress may be drawn: stderr is a terminal
// and -q was not given. Elsewhere (a pipe, a file, cron) coffer draws
// nothing, so logs hold only messages.
func progressWanted() bool {
	return !quiet && stderrTerminal
}

// stderrTerminal is set by run from the real stderr; progressOut is
// where the view draws (a test points it at a pseudo-terminal).
var (
	stderrTerminal bool
	progressOut    = os.Stderr
)

func isTerminal(f *os.File) bool { return f != nil && term.IsTerminal(int(f.Fd())) }

// progressGoal is what an operation expects to reach, when it is known:
// the bar and the ETA follow Bytes if set, else Objects; with neither a
// spinner shows the counts and the rate.
type progressGoal struct {
	Objects int64
	Bytes   int64
}

// progressView draws one line on stderr for a running backup, restore or
// check from the engine's Progress counters: objects and bytes done, a
// bar towards the goal, MB/s over the last seconds, and the time left.
type progressView struct {
	pr       *engine.Progress
	goal     progressGoal
	p        *mpb.Progress
	bar      *mpb.Bar
	stop     chan struct{}
	finished chan struct{}

	mu      sync.Mutex
	samples []progressSample // the last few seconds, oldest first
}

type progressSample struct {
	at             time.Time
	objects, bytes int64
}

const (
	progressTick   = 200 * time.Millisecond
	progressWindow = 5 * time.Second
	// narrowWidth: below it the line has no bar and is cut to the
	// terminal's width (the full line with its 30-column bar takes ~100).
	narrowWidth = 100
)

// fit cuts s to at most n runes.
func fit(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

// startProgress starts drawing, or returns a view that draws nothing when
// progress is not wanted. Call done when the operation ends.
func startProgress(verb string, pr *engine.Progress, goal progressGoal) *progressView {
	v := &progressView{pr: pr, goal: goal}
	if !progressWanted() {
		return v
	}
	width, _, err := term.GetSize(int(progressOut.Fd()))
	if err != nil || width < 20 {
		return v // a terminal of unknown or tiny width shows no line at all
	}
	total := v.goal.Bytes
	if total == 0 {
		total = v.goal.Objects
	}
	if width < narrowWidth {
		// No bar: one line of text, cut to the width, so it never wraps
		// (a wrapped line is redrawn below itself and garbles the screen).
		v.p = mpb.New(mpb.WithOutput(progressOut), mpb.WithRefreshRate(progressTick), mpb.WithWidth(1))
		v.bar = v.p.New(total, mpb.NopStyle(),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
				return fit(verb+" "+v.compact(), width-1)
			})),
			mpb.BarFillerClearOnComplete(),
		)
		v.stop, v.finished = make(chan struct{}), make(chan struct{})
		go v.poll()
		return v
	}
	v.p = mpb.New(mpb.WithOutput(progressOut), mpb.WithRefreshRate(progressTick), mpb.WithWidth(30))
	var style mpb.BarFillerBuilder = mpb.BarStyle().Lbound("[").Rbound("]")
	if total == 0 {
		style = mpb.SpinnerStyle()
	}
	v.bar = v.p.New(total, style,
		mpb.PrependDecorators(
			decor.Name(verb, decor.WC{W: len(verb) + 1, C: decor.DindentRight}),
			decor.Any(func(decor.Statistics) string { return v.counts() }, decor.WC{C: decor.DindentRight}),
		),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string { return v.rateAndETA() }, decor.WC{W: 1}),
		),
		mpb.BarFillerClearOnComplete(),
	)
	v.stop, v.finished = make(chan struct{}), make(chan struct{})
	go v.poll()
	return v
}

// Writer is where messages go while the view draws: above the line, so
// they do not tear it.
func (v *progressView) Writer(fallback io.Writer) io.Writer {
	if v.p == nil {
		return fallback
	}
	return v.p
}

func (v *progressView) poll() {
	defer close(v.finished)
	t := time.NewTicker(progressTick)
	defer t.Stop()
	for {
		v.sample()
		select {
		case <-v.stop:
			return
		case <-t.C:
		}
	}
}

func (v *progressView) sample() {
	now := time.Now()
	s := progressSample{at: now, objects: v.pr.Files.Load(), bytes: v.pr.Bytes.Load()}
	v.mu.Lock()
	v.samples = append(v.samples, s)
	for len(v.samples) > 2 && now.Sub(v.samples[0].at) > progressWindow {
		v.samples = v.samples[1:]
	}
	v.mu.Unlock()
	g := v.getGoal()
	cur, total := s.bytes, g.Bytes
	if total == 0 {
		cur, total = s.objects, g.Objects
	}
	if total > 0 && cur >= total {
		// The goal was an estimate (the parent snapshot's size): keep the
		// bar just short of full until the operation says it is done.
		v.bar.SetTotal(cur+1, false)
	}
	v.bar.SetCurrent(cur)
}

// getGoal returns the goal, which setGoal may change while drawing.
func (v *progressView) getGoal() progressGoal {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.goal
}

// setGoal gives the view a total found while it draws (a first backup's
// scan of its source), for the bar, the counts and the time left.
func (v *progressView) setGoal(g progressGoal) {
	v.mu.Lock()
	v.goal = g
	v.mu.Unlock()
	if v.bar != nil {
		total := g.Bytes
		if total == 0 {
			total = g.Objects
		}
		v.bar.SetTotal(total, false)
	}
}

// window returns the newest sample and the rates over the window.
func (v *progressView) window() (last progressSample, objRate, byteRate float64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.samples) == 0 {
		return progressSample{}, 0, 0
	}
	first, last := v.samples[0], v.samples[len(v.samples)-1]
	if secs := last.at.Sub(first.at).Seconds(); secs > 0.15 {
		objRate = float64(last.objects-first.objects) / secs
		byteRate = float64(last.bytes-first.bytes) / secs
	}
	return last, objRate, byteRate
}

func (v *progressView) counts() string {
	g := v.getGoal()
	last, _, _ := v.window()
	s := humanize.Comma(last.objects) + " objects"
	if g.Objects > 0 && g.Bytes == 0 {
		s += " of ~" + humanize.Comma(g.Objects)
	}
	s += ", " + humanize.IBytes(uint64(last.bytes))
	if g.Bytes > 0 {
		s += " / " + humanize.IBytes(uint64(g.Bytes))
	}
	return s
}

// compact is counts, rate and ETA in as few columns as they fit in
// ("74,070 obj 18 GiB/100 GiB 27 GB/s ETA 3s"), for narrow terminals.
func (v *progressView) compact() string {
	g := v.getGoal()
	last, _, byteRate := v.window()
	s := humanize.Comma(last.objects) + " obj " + humanize.IBytes(uint64(last.bytes))
	if g.Bytes > 0 {
		s += "/" + humanize.IBytes(uint64(g.Bytes))
	} else if g.Objects > 0 {
		s += " of ~" + humanize.Comma(g.Objects) + " obj"
	}
	return s + " " + humanize.Bytes(uint64(byteRate)) + "/s" + v.eta()
}

func (v *progressView) rateAndETA() string {
	_, _, byteRate := v.window()
	s := fmt.Sprintf("%.1f MB/s", byteRate/1e6)
	if eta := v.eta(); eta != "" {
		s += " " + eta
	}
	return s
}

// eta is " ETA 1m2s" towards the goal at the recent rate, or "" with no
// goal or no rate yet.
func (v *progressView) eta() string {
	g := v.getGoal()
	last, objRate, byteRate := v.window()
	var left float64
	switch {
	case g.Bytes > 0 && byteRate > 0:
		left = float64(g.Bytes-last.bytes) / byteRate
	case g.Bytes == 0 && g.Objects > 0 && objRate > 0:
		left = float64(g.Objects-last.objects) / objRate
	default:
		return ""
	}
	return " ETA " + (time.Duration(max(left, 0)) * time.Second).Round(time.Second).String()
}

// done stops drawing: the line is cleared either way, so the summary or
// the error that follows stands alone.
func (v *progressView) done() {
	if v.p == nil {
		return
	}
	close(v.stop)
	<-v.finished
	v.bar.Abort(true)
	v.p.Wait()
}
