//go:build !linux

package main

// echoOff is a no-op here: term.ReadPassword turns echo off by itself.
func echoOff(fd int) (restore func()) { return func() {} }
