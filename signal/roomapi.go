package signal

import (
	"net/http"
	"strconv"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// The room API's read routes (api/openapi.yaml). The write routes are in roomapi_write.go.

// Page sizes of the list routes.
const (
	defaultPageLimit = 100  // when ?limit= is absent
	maxPageLimit     = 1000 // the largest ?limit=
)

// mountRoomAPI serves the read routes of the room API on mux, to holders of an admin token, and
// answers any other path under /api/ with a JSON not_found (rather than the demo page's 404).
func (s *Server) mountRoomAPI(mux *http.ServeMux) {
	get := func(pattern string, h http.HandlerFunc) { mux.Handle("GET "+pattern, s.admin(h)) }
	get("/api/rooms", func(w http.ResponseWriter, r *http.Request) {
		limit, ok := pageLimit(w, r)
		if !ok {
			return
		}
		page, err := s.o.Rooms.ListRooms(r.Context(), r.URL.Query().Get("after"), limit)
		answerAPI(w, page, err)
	})
	get("/api/rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
		d, err := s.o.Rooms.Room(r.Context(), r.PathValue("room"))
		answerAPI(w, d, err)
	})
	get("/api/rooms/{room}/participants", func(w http.ResponseWriter, r *http.Request) {
		limit, ok := pageLimit(w, r)
		if !ok {
			return
		}
		page, err := s.o.Rooms.Participants(r.Context(), r.PathValue("room"), r.URL.Query().Get("after"), limit)
		answerAPI(w, page, err)
	})
	get("/api/rooms/{room}/participants/{identity}", func(w http.ResponseWriter, r *http.Request) {
		p, err := s.o.Rooms.Participant(r.Context(), r.PathValue("room"), r.PathValue("identity"))
		answerAPI(w, p, err)
	})
	mux.Handle("/api/", s.admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, proto.CodeNotFound, "no room API endpoint "+r.Method+" "+r.URL.Path+" (see api/openapi.yaml)")
	})))
}

// pageLimit reads ?limit= (defaultPageLimit when absent); a bad one is answered with 400.
func pageLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultPageLimit, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageLimit {
		writeJSONError(w, http.StatusBadRequest, proto.CodeBadRequest, "limit must be a number from 1 to "+strconv.Itoa(maxPageLimit)+", not "+strconv.Quote(v))
		return 0, false
	}
	return n, true
}

// answerAPI answers a read: v with 200, or err.
func answerAPI(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeAPI(w, http.StatusOK, v)
}
