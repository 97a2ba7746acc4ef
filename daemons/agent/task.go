package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Task is one duty of the daemon (pod network, certificate scan, log
// forwarding, etcd health, memory release). Run works until ctx ends; returning an
// error gets it restarted with back-off, returning nil means it is done.
type Task interface {
	Name() string
	Run(ctx context.Context) error
}

// HealthChecker is an optional ability of a Task: a task that can tell it
// is wedged (not merely failing) makes the daemon stop pinging systemd's
// watchdog, so systemd restarts it.
type HealthChecker interface {
	Healthy() error
}

// Restart back-off of failing tasks: doubling from restartMin up to
// restartMax, reset after a run that lasted restartReset.
const (
	restartMin   = time.Second
	restartMax   = time.Minute
	restartReset = 5 * time.Minute
)

// TaskStatus is a task's state for /v1/status.
type TaskStatus struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // pending, running, backoff, done
	Restarts  int       `json:"restarts"`
	LastError string    `json:"lastError,omitempty"`
	ErrorAt   time.Time `json:"errorAt,omitzero"`
}

// supervisor runs tasks, each in its own goroutine, restarting failed and
// panicking ones.
type supervisor struct {
	tasks []Task
	log   *slog.Logger
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	state  map[string]*TaskStatus
	exited error // a goroutine left its loop while the daemon ran
}

func newSupervisor(tasks []Task, log *slog.Logger, now func() time.Time) *supervisor {
	s := &supervisor{tasks: tasks, log: log, now: now, sleep: sleepCtx, state: map[string]*TaskStatus{}}
	for _, t := range tasks {
		s.state[t.Name()] = &TaskStatus{Name: t.Name(), State: "pending"}
	}
	return s
}

// Run runs every task until ctx ends.
func (s *supervisor) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, t := range s.tasks {
		g.Go(func() error {
			s.loop(ctx, t)
			if ctx.Err() == nil && s.status(t.Name()).State != "done" {
				s.setExited(fmt.Errorf("task %s stopped", t.Name()))
			}
			return nil
		})
	}
	return g.Wait()
}

func (s *supervisor) loop(ctx context.Context, t Task) {
	delay := restartMin
	for {
		s.update(t.Name(), func(st *TaskStatus) { st.State = "running" })
		start := s.now()
		err := runGuarded(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.update(t.Name(), func(st *TaskStatus) { st.State = "done" })
			return
		}
		if s.now().Sub(start) >= restartReset {
			delay = restartMin
		}
		s.log.Error("task failed; restarting", "task", t.Name(), "in", delay, "err", err)
		s.update(t.Name(), func(st *TaskStatus) {
			st.State, st.Restarts, st.LastError, st.ErrorAt = "backoff", st.Restarts+1, err.Error(), s.now()
		})
		if s.sleep(ctx, delay) != nil {
			return
		}
		delay = min(2*delay, restartMax)
	}
}

// runGuarded turns a panic into an error, so one task's bug costs a restart
// of that task, not of the daemon.
func runGuarded(ctx context.Context, t Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return t.Run(ctx)
}

func (s *supervisor) update(name string, f func(*TaskStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.state[name])
}

func (s *supervisor) status(name string) TaskStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.state[name]
}

func (s *supervisor) setExited(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exited = errors.Join(s.exited, err)
}

// Statuses lists the tasks in order.
func (s *supervisor) Statuses() []TaskStatus {
	out := make([]TaskStatus, len(s.tasks))
	for i, t := range s.tasks {
		out[i] = s.status(t.Name())
	}
	return out
}

// Healthy is the watchdog's check: every task goroutine is still in its
// loop, and every running task that can tell says it is not wedged.
func (s *supervisor) Healthy() error {
	s.mu.Lock()
	err := s.exited
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range s.tasks {
		if hc, ok := t.(HealthChecker); ok && s.status(t.Name()).State == "running" {
			if err := hc.Healthy(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
