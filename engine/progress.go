package engine

import "sync/atomic"

// Progress counts a running backup, restore or check; read it atomically.
type Progress struct {
	Files atomic.Int64 // entries done
	Bytes atomic.Int64 // content bytes done
}
