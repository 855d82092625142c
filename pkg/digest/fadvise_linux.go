package digest

import (
	"os"

	"golang.org/x/sys/unix"
)

// adviseSequential asks the kernel for aggressive read-ahead on [off,
// off+n), which helps cold reads from disk; it is a hint and never fails.
func adviseSequential(r any, off, n int64) {
	if f, ok := r.(*os.File); ok {
		_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_SEQUENTIAL)
	}
}
