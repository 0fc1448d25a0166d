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
	mux.Handle("GET /api/rooms", s.admin(http.HandlerFunc(s.listRooms)))
	mux.Handle("GET /api/rooms/{room}", s.admin(http.HandlerFunc(s.getRoom)))
	mux.Handle("GET /api/rooms/{room}/participants", s.admin(http.HandlerFunc(s.listParticipants)))
	mux.Handle("GET /api/rooms/{room}/participants/{identity}", s.admin(http.HandlerFunc(s.getParticipant)))
	mux.Handle("/api/", s.admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, proto.CodeNotFound, "no room API endpoint "+r.Method+" "+r.URL.Path+" (see api/openapi.yaml)")
	})))
}

// listRooms is GET /api/rooms?after=NAME&limit=N.
func (s *Server) listRooms(w http.ResponseWriter, r *http.Request) {
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	page, err := s.o.Rooms.ListRooms(r.Context(), r.URL.Query().Get("after"), limit)
	answerAPI(w, page, err)
}

// getRoom is GET /api/rooms/{room}.
func (s *Server) getRoom(w http.ResponseWriter, r *http.Request) {
	d, err := s.o.Rooms.Room(r.Context(), r.PathValue("room"))
	answerAPI(w, d, err)
}

// listParticipants is GET /api/rooms/{room}/participants?after=IDENTITY&limit=N.
func (s *Server) listParticipants(w http.ResponseWriter, r *http.Request) {
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	page, err := s.o.Rooms.Participants(r.Context(), r.PathValue("room"), r.URL.Query().Get("after"), limit)
	answerAPI(w, page, err)
}

// getParticipant is GET /api/rooms/{room}/participants/{identity}.
func (s *Server) getParticipant(w http.ResponseWriter, r *http.Request) {
	p, err := s.o.Rooms.Participant(r.Context(), r.PathValue("room"), r.PathValue("identity"))
	answerAPI(w, p, err)
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
