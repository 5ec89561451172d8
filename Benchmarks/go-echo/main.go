// go-echo is the benchmark's second baseline: a ttrpc server built on containerd's own Go
// library (Debian's golang-github-containerd-ttrpc-dev), answering every unary call of any
// method of the services named on the command line with a fixed response of N bytes. It is
// what "the per-call cost of containerd's ttrpc" means in BENCHMARKS.md.
//
// Build offline in GOPATH mode (as the Go interop test does):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o go-echo .
//
// Usage: go-echo SOCKET RESPONSE_BYTES SERVICE/METHOD...
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/ttrpc"
)

// rawMessage carries bytes through the gogo codec without generated code.
type rawMessage struct{ data []byte }

func (m *rawMessage) Reset()                   { m.data = nil }
func (m *rawMessage) String() string           { return "" }
func (m *rawMessage) ProtoMessage()            {}
func (m *rawMessage) Marshal() ([]byte, error) { return m.data, nil }
func (m *rawMessage) Unmarshal(b []byte) error {
	m.data = b
	return nil
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: go-echo SOCKET RESPONSE_BYTES SERVICE/METHOD...")
		os.Exit(2)
	}
	socket := os.Args[1]
	size, err := strconv.Atoi(os.Args[2])
	if err != nil || size < 0 {
		fmt.Fprintln(os.Stderr, "RESPONSE_BYTES must be a number >= 0")
		os.Exit(2)
	}
	response := make([]byte, size)
	for i := range response {
		response[i] = 0x5A
	}
	methods := map[string]map[string]ttrpc.Method{}
	for _, name := range os.Args[3:] {
		parts := strings.SplitN(name, "/", 2)
		if len(parts) != 2 {
			fmt.Fprintf(os.Stderr, "%q is not SERVICE/METHOD\n", name)
			os.Exit(2)
		}
		if methods[parts[0]] == nil {
			methods[parts[0]] = map[string]ttrpc.Method{}
		}
		methods[parts[0]][parts[1]] = func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var request rawMessage
			if err := unmarshal(&request); err != nil {
				return nil, err
			}
			return &rawMessage{data: response}, nil
		}
	}
	server, err := ttrpc.NewServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for service, table := range methods {
		server.Register(service, table)
	}
	os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		server.Close()
		os.Exit(0)
	}()
	if err := server.Serve(context.Background(), listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
