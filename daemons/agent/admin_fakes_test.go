package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing/iotest"
)

// fakeControl records unit jobs; fail makes a job on that unit fail.
type fakeControl struct {
	mu   sync.Mutex
	jobs []string // "stop etcd.service"
	fail map[string]error
}

func (f *fakeControl) job(verb, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, verb+" "+name)
	return f.fail[verb+" "+name]
}

func (f *fakeControl) StartUnit(_ context.Context, n string) error   { return f.job("start", n) }
func (f *fakeControl) StopUnit(_ context.Context, n string) error    { return f.job("stop", n) }
func (f *fakeControl) RestartUnit(_ context.Context, n string) error { return f.job("restart", n) }

func (f *fakeControl) done() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.jobs...)
}

// fakeCommands records command lines and runs do (if set) for each.
type fakeCommands struct {
	mu    sync.Mutex
	lines [][]string
	do    func(name string, args []string) error
}

func (f *fakeCommands) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	f.lines = append(f.lines, append([]string{name}, args...))
	do := f.do
	f.mu.Unlock()
	if do != nil {
		if err := do(name, args); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(append([]string{name}, args...), " "), err)
		}
	}
	return nil, nil
}

// fakeSnapshots streams data, then fails with err (if set) instead of
// ending; openErr fails the open.
type fakeSnapshots struct {
	data    []byte
	err     error
	openErr error
	opened  int
}

func (f *fakeSnapshots) open(context.Context) (io.ReadCloser, error) {
	f.opened++
	if f.openErr != nil {
		return nil, f.openErr
	}
	var r io.Reader = bytes.NewReader(f.data)
	if f.err != nil {
		r = io.MultiReader(r, iotest.ErrReader(f.err))
	}
	return io.NopCloser(r), nil
}

var errEtcdDown = errors.New("context deadline exceeded (etcd down)")
