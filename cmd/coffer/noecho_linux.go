package main

import "golang.org/x/sys/unix"

// echoOff turns the terminal's echo off until restore is called, so that
// a passphrase typed as soon as the prompt shows is not echoed in the
// moment before term.ReadPassword turns echo off itself.
func echoOff(fd int) (restore func()) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	if unix.IoctlSetTermios(fd, unix.TCSETS, &t) != nil {
		return func() {}
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
