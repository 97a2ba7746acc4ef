package addonmanager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"kubeup.dev/kubeup/components"
)

// pruneKinds are watched (and so pruned) even when no manifest declares
// them any more, so that removing the last manifest of a kind still deletes
// its objects after a restart. It is upstream's default prune allowlist
// (kubectl apply --prune) on current API versions, without the deprecated
// Endpoints and ReplicationController, plus the RBAC and cluster-wide
// kinds addons ship.
var pruneKinds = []schema.GroupKind{
	{Kind: "ConfigMap"}, {Kind: "Namespace"}, {Kind: "PersistentVolumeClaim"}, {Kind: "Pod"},
	{Kind: "Secret"}, {Kind: "Service"}, {Kind: "ServiceAccount"},
	{Group: "batch", Kind: "Job"}, {Group: "batch", Kind: "CronJob"},
	{Group: "apps", Kind: "DaemonSet"}, {Group: "apps", Kind: "Deployment"},
	{Group: "apps", Kind: "ReplicaSet"}, {Group: "apps", Kind: "StatefulSet"},
	{Group: "networking.k8s.io", Kind: "Ingress"}, {Group: "networking.k8s.io", Kind: "NetworkPolicy"},
	{Group: "policy", Kind: "PodDisruptionBudget"},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"},
	{Group: "rbac.authorization.k8s.io", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"},
	{Group: "storage.k8s.io", Kind: "StorageClass"},
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"},
}

// Timing of retries and of discovery. Restorations and retries of an
// object back off exponentially from retryBaseDelay up to the resync
// period; a successful sync resets them.
const (
	retryBaseDelay = 100 * time.Millisecond
	// callTimeout bounds every API call, so that a hung API server stalls
	// neither a sync nor a queue worker.
	callTimeout      = 30 * time.Second
	cacheSyncTimeout = 15 * time.Second
	// minMapperReset spaces discovery refreshes: a CRD created moments ago
	// takes a second or two to be served, and every custom resource of it
	// would otherwise refresh discovery again.
	minMapperReset = 2 * time.Second
)

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Dirs []string
	// Rendered are manifests made in memory, read before Dirs.
	Rendered []components.File
	Resync   time.Duration
	Client   dynamic.Interface
	// Mapper maps kinds to resources; it is reset when a kind is unknown
	// (a CRD applied by an earlier manifest).
	Mapper  meta.ResettableRESTMapper
	Log     *slog.Logger
	Metrics *Metrics
	// OnSync, if set, is called after every sync.
	OnSync func(SyncResult)
}

// Reconciler keeps the cluster's addons as their manifests declare, the way
// upstream's kube-addon-manager does with kubectl, but with server-side
// apply and watches: deleted or edited Reconcile objects are restored as
// soon as the change is seen, not at the next resync.
type Reconciler struct {
	dirs     []string
	rendered []components.File
	resync   time.Duration
	client   dynamic.Interface
	mapper   meta.ResettableRESTMapper
	log      *slog.Logger
	metrics  *Metrics
	onSync   func(SyncResult)
	factory  dynamicinformer.DynamicSharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[objectKey]
	stop     <-chan struct{} // stops informers; set by Run

	mu        sync.Mutex
	desired   map[objectKey]target
	written   map[objectKey]write // what this process last applied or found
	watched   map[schema.GroupKind]watchedKind
	lastReset time.Time

	lastRun atomic.Int64 // unix nanoseconds of the end of the last sync
}

// target is an addon resolved against the API server's kinds.
type target struct {
	Addon
	key      objectKey
	gvr      schema.GroupVersionResource
	resolved bool
}

// write records the last apply of an object, to tell what the next one did.
type write struct {
	hash string // of the object sent
	uid  types.UID
	rv   string
	at   time.Time // of the apply; zero for a create or an adoption
}

// fullApplyEvery bounds how long a sync trusts the cache: an object that
// still matches its manifest is applied again at most this many resyncs
// after its last apply, as a backstop for an edit diverged cannot see.
const fullApplyEvery = 10

type watchedKind struct {
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
}

// NewReconciler returns a reconciler; Run starts it.
func NewReconciler(o ReconcilerOptions) *Reconciler {
	selector := ManagedByLabel + "=" + FieldManager
	return &Reconciler{
		dirs: o.Dirs, rendered: o.Rendered, resync: o.Resync, client: o.Client, mapper: o.Mapper, log: o.Log, metrics: o.Metrics, onSync: o.OnSync,
		// Only our objects are cached: the label is on everything we apply.
		factory: dynamicinformer.NewFilteredDynamicSharedInformerFactory(o.Client, 0, metav1.NamespaceAll,
			func(lo *metav1.ListOptions) { lo.LabelSelector = selector }),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[objectKey](retryBaseDelay, o.Resync),
			workqueue.TypedRateLimitingQueueConfig[objectKey]{Name: "addons"}),
		desired: map[objectKey]target{},
		written: map[objectKey]write{},
		watched: map[schema.GroupKind]watchedKind{},
	}
}

// LastRun is when the last sync ended (zero before the first).
func (r *Reconciler) LastRun() time.Time {
	n := r.lastRun.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Run syncs now and every resync until ctx ends, and restores objects from
// watch events in between. Each sync is bounded by the resync period, so
// that a hung API server cannot stall the loop.
func (r *Reconciler) Run(ctx context.Context) {
	r.stop = ctx.Done()
	defer r.queue.ShutDown()
	go func() {
		for r.processNext(ctx) {
		}
	}()
	t := time.NewTicker(r.resync)
	defer t.Stop()
	for {
		pass, cancel := context.WithTimeout(ctx, r.resync)
		r.Sync(pass)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SyncResult counts what one sync did.
type SyncResult struct {
	Declared int // objects the manifests declare
	Refused  int // files and objects refused
	Changed  int // objects created, updated or restored
	Failed   int // objects that could not be applied (retried with backoff)
	Pruned   int
	// Pruning is false when pruning was skipped because the declared set was
	// incomplete (a refused file or object, an unknown kind).
	Pruning bool
}

// Sync reads the manifests, applies every object in order, and prunes.
func (r *Reconciler) Sync(ctx context.Context) SyncResult {
	start := time.Now()
	var res SyncResult
	addons, loadErr := LoadManifests(r.dirs, r.rendered...)
	for _, err := range unjoin(loadErr) {
		r.log.Error("refused manifest", "err", err)
		res.Refused++
	}
	addons = withoutExpiredTokens(addons, start, r.log)
	Order(addons)
	complete := loadErr == nil
	desired := make(map[objectKey]target, len(addons))
	targets := make([]target, 0, len(addons))
	kinds := map[schema.GroupKind]bool{}
	for _, a := range addons {
		t, err := r.resolve(a)
		if err != nil {
			r.logResolveError(a, 0, err)
			r.metrics.failed.WithLabelValues(a.GroupKind().Kind).Inc()
			complete = false
		} else {
			kinds[t.key.GroupKind()] = true
		}
		desired[t.key] = t
		targets = append(targets, t)
	}
	res.Declared = len(targets)
	r.mu.Lock()
	r.desired = desired
	r.mu.Unlock()
	r.recordManifest(targets, res.Refused)

	for _, gk := range pruneKinds {
		kinds[gk] = true
	}
	r.watch(ctx, kinds)

	for _, t := range targets {
		if !t.resolved {
			res.Failed++
			r.queue.AddRateLimited(t.key)
			continue
		}
		changed, err := r.reconcile(ctx, t, false)
		if err != nil {
			r.log.Warn("apply failed; will retry", "object", t.String(), "source", t.Source, "err", err)
			res.Failed++
			r.queue.AddRateLimited(t.key)
			continue
		}
		r.queue.Forget(t.key)
		if changed {
			res.Changed++
		}
	}

	if complete {
		res.Pruning = true
		pruned, failed := r.prune(ctx, desired)
		res.Pruned, res.Failed = pruned, res.Failed+failed
	} else {
		r.log.Warn("not pruning: the declared set is incomplete until every manifest loads and every kind is known")
	}

	now := time.Now()
	r.lastRun.Store(now.UnixNano())
	r.metrics.lastSync.Set(float64(now.Unix()))
	if res.Refused == 0 && res.Failed == 0 && res.Pruning {
		r.metrics.lastSuccess.Set(float64(now.Unix()))
	}
	level := slog.LevelDebug
	if res.Changed+res.Failed+res.Pruned+res.Refused > 0 {
		level = slog.LevelInfo
	}
	r.log.Log(ctx, level, "sync complete", "declared", res.Declared, "changed", res.Changed, "failed", res.Failed,
		"pruned", res.Pruned, "refused", res.Refused, "duration", time.Since(start).Round(time.Millisecond))
	if r.onSync != nil {
		r.onSync(res)
	}
	return res
}

func (r *Reconciler) recordManifest(targets []target, refused int) {
	counts := map[Mode]int{Reconcile: 0, EnsureExists: 0}
	for _, t := range targets {
		counts[t.Mode]++
	}
	for m, n := range counts {
		r.metrics.manifest.WithLabelValues(string(m)).Set(float64(n))
	}
	r.metrics.manifest.WithLabelValues("refused").Set(float64(refused))
}

// resolve maps an addon's kind to its resource and sets its namespace as
// kubectl would: "default" for a namespaced object without one, none for a
// cluster-scoped object. An unknown kind gives an unresolved target under
// the object's key as written, and an error.
func (r *Reconciler) resolve(a Addon) (target, error) {
	gvk := a.Object.GroupVersionKind()
	m, err := r.mapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return target{Addon: a, key: keyOf(a.Object)}, err
	}
	obj := a.Object.DeepCopy()
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
	} else {
		obj.SetNamespace("")
	}
	a.Object = obj
	return target{Addon: a, key: keyOf(obj), gvr: m.Resource, resolved: true}, nil
}

func (r *Reconciler) logResolveError(a Addon, retries int, err error) {
	if meta.IsNoMatchError(err) {
		// Expected for a second or two after its CRD is created.
		r.log.Info("kind not served yet; will retry", "object", a.String(), "source", a.Source, "retries", retries, "err", err)
		return
	}
	r.log.Warn("discovery failed; will retry", "object", a.String(), "retries", retries, "err", err)
}

// mapping asks the mapper, refreshing discovery once when the kind is
// unknown.
func (r *Reconciler) mapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	m, err := r.mapper.RESTMapping(gk, versions...)
	if err == nil || !meta.IsNoMatchError(err) {
		return m, err
	}
	r.mu.Lock()
	reset := time.Since(r.lastReset) >= minMapperReset
	if reset {
		r.lastReset = time.Now()
	}
	r.mu.Unlock()
	if !reset {
		return nil, err
	}
	r.mapper.Reset()
	return r.mapper.RESTMapping(gk, versions...)
}

// watch starts an informer for every kind not watched yet (on the kind's
// preferred version, so that one kind has one informer) and waits a while
// for their caches.
func (r *Reconciler) watch(ctx context.Context, kinds map[schema.GroupKind]bool) {
	var synced []cache.InformerSynced
	r.mu.Lock()
	for gk := range kinds {
		if w, ok := r.watched[gk]; ok {
			synced = append(synced, w.informer.HasSynced)
			continue
		}
		m, err := r.mapper.RESTMapping(gk)
		if err != nil {
			continue // not served (yet); watched once a manifest of it resolves
		}
		inf := r.factory.ForResource(m.Resource).Informer()
		if _, err := inf.AddEventHandler(r.handler(gk)); err != nil {
			r.log.Error("watch", "kind", gk.String(), "err", err)
			continue
		}
		r.watched[gk] = watchedKind{gvr: m.Resource, informer: inf}
		synced = append(synced, inf.HasSynced)
	}
	r.mu.Unlock()
	r.factory.Start(r.stop)
	wait, cancel := context.WithTimeout(ctx, cacheSyncTimeout)
	defer cancel()
	cache.WaitForCacheSync(wait.Done(), synced...)
}

func (r *Reconciler) handler(gk schema.GroupKind) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { r.onUpdate(gk, obj) },
		DeleteFunc: func(obj any) { r.onDelete(gk, obj) },
	}
}

// onUpdate queues a Reconcile object that was edited away from its
// manifest. Our own applies arrive here too; they do not diverge.
func (r *Reconciler) onUpdate(gk schema.GroupKind, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetDeletionTimestamp() != nil {
		return // being deleted: the delete event restores it
	}
	key := objectKey{Group: gk.Group, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	r.mu.Lock()
	t, ok := r.desired[key]
	r.mu.Unlock()
	if !ok || !t.resolved || t.Mode != Reconcile || !diverged(t.Object, u) {
		return
	}
	r.log.Info("object changed away from its manifest; restoring", "object", key.String(), "source", t.Source)
	r.queue.AddRateLimited(key)
}

// onDelete queues a declared object that was deleted (or lost our label,
// which takes it out of the watch).
func (r *Reconciler) onDelete(gk schema.GroupKind, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := objectKey{Group: gk.Group, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	r.mu.Lock()
	t, ok := r.desired[key]
	r.mu.Unlock()
	if !ok {
		return
	}
	r.log.Info("object deleted; restoring", "object", key.String(), "mode", t.Mode, "source", t.Source)
	r.queue.AddRateLimited(key)
}

// processNext applies one queued object. A restoration that changed the
// object keeps its backoff, so a controller fighting a manifest (an
// autoscaler editing declared replicas) meets exponentially spaced
// restorations instead of a busy loop.
func (r *Reconciler) processNext(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	r.mu.Lock()
	t, ok := r.desired[key]
	r.mu.Unlock()
	if !ok {
		r.queue.Forget(key)
		return true
	}
	if !t.resolved {
		resolved, err := r.resolve(t.Addon)
		if err != nil {
			r.logResolveError(t.Addon, r.queue.NumRequeues(key), err)
			r.queue.AddRateLimited(key)
			return true
		}
		t = resolved
		r.mu.Lock()
		if t.key != key {
			delete(r.desired, key)
		}
		r.desired[t.key] = t
		r.mu.Unlock()
		r.watch(ctx, map[schema.GroupKind]bool{t.key.GroupKind(): true})
	}
	changed, err := r.reconcile(ctx, t, true)
	switch {
	case err != nil:
		r.log.Warn("apply failed; will retry", "object", t.String(), "retries", r.queue.NumRequeues(key), "err", err)
		r.queue.AddRateLimited(key)
	case !changed:
		r.queue.Forget(key)
	}
	return true
}

// cached returns the live object from the informer cache, and whether that
// cache is synced (only then does "not cached" mean "does not exist").
func (r *Reconciler) cached(t target) (*unstructured.Unstructured, bool) {
	r.mu.Lock()
	w, ok := r.watched[t.key.GroupKind()]
	r.mu.Unlock()
	if !ok || !w.informer.HasSynced() {
		return nil, false
	}
	storeKey := t.key.Name
	if t.key.Namespace != "" {
		storeKey = t.key.Namespace + "/" + t.key.Name
	}
	obj, exists, err := w.informer.GetStore().GetByKey(storeKey)
	if err != nil || !exists {
		return nil, true
	}
	u, _ := obj.(*unstructured.Unstructured)
	return u, true
}

// reconcile applies one object: server-side apply with forced conflicts
// for Reconcile, create-if-absent for EnsureExists. It reports whether the
// object was created, updated or restored.
//
// fromEvent says a watch event queued the object: then the informer cache
// holds the event's object, and what the apply changed is known from it.
// A sync does not trust the cache that way (it may not have caught up with
// the previous sync's writes yet) and compares with the last write instead.
func (r *Reconciler) reconcile(ctx context.Context, t target, fromEvent bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	kind := t.key.Kind
	live, synced := r.cached(t)
	hash := hashObject(t.Object)
	r.mu.Lock()
	last, known := r.written[t.key]
	r.mu.Unlock()

	var client dynamic.ResourceInterface = r.client.Resource(t.gvr)
	if ns := t.Object.GetNamespace(); ns != "" {
		client = r.client.Resource(t.gvr).Namespace(ns)
	}
	var verb string
	switch t.Mode {
	case EnsureExists:
		if live != nil {
			r.remember(t.key, write{hash: hash, uid: live.GetUID(), rv: live.GetResourceVersion()})
			return false, nil
		}
		out, err := client.Create(ctx, t.Object, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			// Someone else's object, one that lost our label, or one the
			// cache has not seen yet: left as it is.
			r.remember(t.key, write{hash: hash})
			return false, nil
		}
		if err != nil {
			r.metrics.failed.WithLabelValues(kind).Inc()
			return false, fmt.Errorf("create %s: %w", t, err)
		}
		r.remember(t.key, write{hash: hash, uid: out.GetUID(), rv: out.GetResourceVersion()})
		verb = "created"
	default:
		// A sync leaves alone what has not changed since our last apply:
		// same manifest, same object (UID), and every declared field as
		// declared. Each server-side apply costs the API server a merge
		// even when it changes nothing, and on a small or emulated master
		// a dozen of them a minute is real load. Watch events (edits,
		// deletions) are handled as they come; see onUpdate and onDelete.
		if !fromEvent && known && live != nil && last.hash == hash && last.uid == live.GetUID() &&
			!last.at.IsZero() && time.Since(last.at) < fullApplyEvery*r.resync && !diverged(t.Object, live) {
			r.metrics.skipped.WithLabelValues(kind).Inc()
			return false, nil
		}
		out, err := client.Apply(ctx, t.key.Name, t.Object, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			r.metrics.failed.WithLabelValues(kind).Inc()
			return false, fmt.Errorf("apply %s: %w", t, err)
		}
		r.remember(t.key, write{hash: hash, uid: out.GetUID(), rv: out.GetResourceVersion(), at: time.Now()})
		rv := out.GetResourceVersion()
		switch {
		case fromEvent || !known:
			if live == nil && synced {
				verb = "created"
			} else if live != nil && rv != live.GetResourceVersion() && diverged(t.Object, live) {
				verb = "updated"
			}
		case last.uid != "" && out.GetUID() != last.uid:
			verb = "created" // deleted since the last sync
		case rv != last.rv && hash != last.hash:
			verb = "updated" // the manifest changed
		}
	}
	r.metrics.applied.WithLabelValues(kind).Inc()
	if verb == "" {
		r.log.Debug("applied", "object", t.String())
		return false, nil
	}
	// Same manifest as last time, yet the cluster had to change: someone
	// deleted or edited the object.
	if known && last.hash == hash {
		verb = "restored"
		r.metrics.restored.WithLabelValues(kind, nameLabel(t.key)).Inc()
	}
	r.log.Info(verb, "object", t.String(), "mode", t.Mode, "source", t.Source)
	return true, nil
}

func (r *Reconciler) remember(k objectKey, w write) {
	r.mu.Lock()
	r.written[k] = w
	r.mu.Unlock()
}

// prune deletes our Reconcile objects that no manifest declares any more,
// like kubectl apply --prune -l addonmanager.kubernetes.io/mode=Reconcile,
// but only objects labelled ManagedByLabel=FieldManager, and only from
// caches that are synced.
func (r *Reconciler) prune(ctx context.Context, desired map[objectKey]target) (pruned, failed int) {
	r.mu.Lock()
	watched := make(map[schema.GroupKind]watchedKind, len(r.watched))
	for gk, w := range r.watched {
		watched[gk] = w
	}
	r.mu.Unlock()
	background := metav1.DeletePropagationBackground
	for gk, w := range watched {
		if !w.informer.HasSynced() {
			r.log.Warn("not pruning a kind whose cache is not synced", "kind", gk.String())
			continue
		}
		for _, obj := range w.informer.GetStore().List() {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			l := u.GetLabels()
			if l[ManagedByLabel] != FieldManager || Mode(l[components.AddonModeLabel]) != Reconcile || u.GetDeletionTimestamp() != nil {
				continue
			}
			key := objectKey{Group: gk.Group, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
			if _, ok := desired[key]; ok {
				continue
			}
			var client dynamic.ResourceInterface = r.client.Resource(w.gvr)
			if key.Namespace != "" {
				client = r.client.Resource(w.gvr).Namespace(key.Namespace)
			}
			uid := u.GetUID()
			dctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := client.Delete(dctx, key.Name, metav1.DeleteOptions{
				Preconditions:     &metav1.Preconditions{UID: &uid},
				PropagationPolicy: &background,
			})
			cancel()
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				continue // already gone, or re-created since the cache saw it
			}
			if err != nil {
				r.log.Warn("prune failed", "object", key.String(), "err", err)
				r.metrics.failed.WithLabelValues(gk.Kind).Inc()
				failed++
				continue
			}
			r.mu.Lock()
			delete(r.written, key)
			r.mu.Unlock()
			r.metrics.pruned.WithLabelValues(gk.Kind).Inc()
			r.log.Info("pruned: no manifest declares it any more", "object", key.String())
			pruned++
		}
	}
	return pruned, failed
}

func hashObject(o *unstructured.Unstructured) string {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func nameLabel(k objectKey) string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

// unjoin lists the errors errors.Join combined.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
