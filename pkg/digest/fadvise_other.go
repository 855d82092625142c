//go:build !linux

package digest

func adviseSequential(any, int64, int64) {}
