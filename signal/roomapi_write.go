package signal

import (
	"net/http"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// mountRoomAPIWrite adds the room API's actions (POST, PATCH, DELETE under /api/rooms) to mux,
// each behind the admin token; nothing without Options.Rooms. The checks of names and values
// are the Rooms implementation's, so every caller of it gets the same answers.
func (s *Server) mountRoomAPIWrite(mux *http.ServeMux) {
	rooms := s.o.Rooms
	if rooms == nil {
		return
	}
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.admin(h)) }

	handle("POST /api/rooms", func(w http.ResponseWriter, r *http.Request) {
		var req proto.CreateRoom
		if !readAPI(w, r, &req) {
			return
		}
		room, created, err := rooms.CreateRoom(r.Context(), req)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeAPI(w, status, room)
	})
	handle("PATCH /api/rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
		var req proto.UpdateRoom
		if !readAPI(w, r, &req) {
			return
		}
		room, err := rooms.UpdateRoom(r.Context(), r.PathValue("room"), req)
		writeAction(w, http.StatusOK, room, err)
	})
	handle("DELETE /api/rooms/{room}", func(w http.ResponseWriter, r *http.Request) {
		writeAction(w, http.StatusNoContent, nil, rooms.DeleteRoom(r.Context(), r.PathValue("room")))
	})
	handle("DELETE /api/rooms/{room}/participants/{identity}", func(w http.ResponseWriter, r *http.Request) {
		writeAction(w, http.StatusNoContent, nil, rooms.RemoveParticipant(r.Context(), r.PathValue("room"), r.PathValue("identity")))
	})
	handle("PATCH /api/rooms/{room}/participants/{identity}", func(w http.ResponseWriter, r *http.Request) {
		var req proto.UpdateParticipant
		if !readAPI(w, r, &req) {
			return
		}
		p, err := rooms.UpdateParticipant(r.Context(), r.PathValue("room"), r.PathValue("identity"), req)
		writeAction(w, http.StatusOK, p, err)
	})
	handle("POST /api/rooms/{room}/participants/{identity}/mute", func(w http.ResponseWriter, r *http.Request) {
		var req proto.MuteProducer
		if !readAPI(w, r, &req) {
			return
		}
		p, err := rooms.MuteProducer(r.Context(), r.PathValue("room"), r.PathValue("identity"), req)
		writeAction(w, http.StatusOK, p, err)
	})
	handle("POST /api/rooms/{room}/data", func(w http.ResponseWriter, r *http.Request) {
		var req proto.SendData
		if !readAPI(w, r, &req) {
			return
		}
		writeAction(w, http.StatusNoContent, nil, rooms.SendData(r.Context(), r.PathValue("room"), req))
	})
}

// writeAction writes a room API action's outcome: err as its error, else status with v.
func writeAction(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeAPI(w, status, v)
}
