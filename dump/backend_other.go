//go:build !linux

package dump

import "errors"

var errNoBackendNice = errors.New("lowering the server backend needs Linux's /proc")

func lowerBackend(pid, clientPort, nice int) (int, error) { return 0, errNoBackendNice }

func backendAlive(pid, clientPort int) bool { return false }

func restoreBackend(pid, clientPort, nice int) error { return errNoBackendNice }
