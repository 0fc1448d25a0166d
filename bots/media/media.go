// Package media holds the clips the bots publish: ten seconds of VP8 video and Opus audio,
// generated once with ffmpeg (see README.md) and embedded so that no tool is needed at run time.
// The video also comes as two smaller simulcast layers made from it.
package media

import _ "embed"

// VideoIVF is 10 s of 640x360 VP8 at 30 fps (about 1.4 Mbit/s, a keyframe every 30 frames), in IVF.
//
//go:embed video.ivf
var VideoIVF []byte

// AudioOgg is 10 s of Opus at 48 kHz (a 440 Hz tone, one 20 ms frame per Ogg page), in Ogg.
//
//go:embed audio.ogg
var AudioOgg []byte

// layerQ and layerH are VideoIVF scaled down to 160x90 (about 110 kbit/s) and 320x180 (about
// 290 kbit/s), with keyframes at the same frames (every 30).
var (
	//go:embed layer-q.ivf
	layerQ []byte
	//go:embed layer-h.ivf
	layerH []byte
)

// Layer is one simulcast layer of the video clip.
type Layer struct {
	// Rid is the layer's RTP stream id (RFC 8852): q, h, f, as in PROTOCOL.md.
	Rid           string
	Width, Height int
	// IVF is the layer's VP8 clip: 300 frames at 30 fps, a keyframe every 30.
	IVF []byte
}

// Layers are the video clip's simulcast layers, lowest quality first (the order of a producer's
// layers): a quarter, a half and the full size, each about a third of the next one's bitrate or
// less. The top layer is VideoIVF itself.
func Layers() []Layer {
	return []Layer{
		{Rid: "q", Width: 160, Height: 90, IVF: layerQ},
		{Rid: "h", Width: 320, Height: 180, IVF: layerH},
		{Rid: "f", Width: 640, Height: 360, IVF: VideoIVF},
	}
}
