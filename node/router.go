package node

// A router is one room on one worker: the receive transports of the room's subscribers that
// live on that worker, and so the consumers the worker's fan-out writes for the room. The home
// router also holds the publishers' send transports; the room's producers are piped in-process
// from it to its other routers (a producer's pipe per worker, see pipe). A Room creates its
// routers as its subscribers outgrow a worker (Options.WorkerConsumers), and they live as long
// as the room. Its fields are guarded by the room's mu.
type router struct {
	worker    *Worker
	consumers int // the room's consumers on the worker
}

// newRouter places a router of the room on w (the worker counts it for placement).
func newRouter(w *Worker) *router {
	w.nRouters.Add(1)
	return &router{worker: w}
}

// close removes the router from its worker's count.
func (rt *router) close() { rt.worker.nRouters.Add(-1) }
