// Package signal is Cascade's client signaling: the WebSocket protocol of PROTOCOL.md (its wire
// types are in signal/proto), WHIP and WHEP, and the node's HTTP endpoints.
package signal

import (
	"errors"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// codeOf maps an error from the node or the token check to its wire code.
func codeOf(err error) string {
	var e *proto.Error
	if c := limitCode(err); c != "" {
		return c
	}
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, auth.ErrExpired):
		return proto.CodeTokenExpired
	case errors.Is(err, auth.ErrNoToken), errors.Is(err, auth.ErrBadToken):
		return proto.CodeUnauthorized
	case errors.Is(err, node.ErrForbidden):
		return proto.CodeForbidden
	case errors.Is(err, node.ErrBadSDP):
		return proto.CodeBadSDP
	case errors.Is(err, node.ErrBadCandidate):
		return proto.CodeBadRequest
	case errors.Is(err, node.ErrNotFound):
		return proto.CodeNotFound
	case errors.Is(err, node.ErrBadState), errors.Is(err, node.ErrClosed):
		return proto.CodeBadState
	case errors.Is(err, node.ErrDraining):
		return proto.CodeDraining
	case errors.Is(err, node.ErrResume): // a publish naming producers its session did not have
		return proto.CodeBadRequest
	}
	return proto.CodeInternal
}

func errorf(code, msg string) *proto.Error { return &proto.Error{Code: code, Message: msg} }

// participant and producer turn node's descriptions into their wire form. The conversions
// compile only while the two struct types have the same fields; TestWireObjects checks that
// their JSON tags agree too.
func participant(i node.ParticipantInfo) proto.Participant { return proto.Participant(i) }

func producer(i node.ProducerInfo) proto.Producer { return proto.Producer(i) }

// each converts a slice, keeping nil as nil (null on the wire) and empty as empty ([]).
func each[T, W any](xs []T, f func(T) W) []W {
	if xs == nil {
		return nil
	}
	out := make([]W, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// layerPref converts setPreferredLayer's data to the node's preference (no layer number: -1).
func layerPref(d proto.PreferredLayerData) node.LayerPref {
	pref := node.LayerPref{Layer: -1, MaxWidth: max(d.MaxWidth, 0), MaxHeight: max(d.MaxHeight, 0)}
	if d.Layer != nil && *d.Layer >= 0 {
		pref.Layer = *d.Layer
	}
	return pref
}
