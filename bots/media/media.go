// Package media holds the clips the bots publish: ten seconds of VP8 video and Opus audio,
// generated once with ffmpeg (see README.md) and embedded so that no tool is needed at run time.
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
