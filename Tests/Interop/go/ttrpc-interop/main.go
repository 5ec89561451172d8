// ttrpc-interop calls one unary creditd method with containerd's Go ttrpc client (the Debian
// golang-github-containerd-ttrpc-dev package) and prints the outcome as one JSON object:
//
//	{"code":0,"message":"","payload":"0801"}
//
// code is the gRPC status code, or -1 when the call failed without a status (connection or
// local error). Payloads are hex, so no generated Go code is needed: rawMessage satisfies
// the codec's Marshal/Unmarshal interface with the bytes as they are.
//
// Build offline in GOPATH mode:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o ttrpc-interop .
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
)

// rawMessage carries already-encoded protobuf bytes through the gogo codec, which uses a
// message's own Marshal/Unmarshal methods when it has them.
type rawMessage struct{ data []byte }

func (m *rawMessage) Reset()                   { m.data = nil }
func (m *rawMessage) String() string           { return hex.EncodeToString(m.data) }
func (m *rawMessage) ProtoMessage()            {}
func (m *rawMessage) Marshal() ([]byte, error) { return m.data, nil }
func (m *rawMessage) Unmarshal(b []byte) error {
	m.data = append([]byte(nil), b...)
	return nil
}

type metadataFlag []string

func (f *metadataFlag) String() string     { return strings.Join(*f, ",") }
func (f *metadataFlag) Set(v string) error { *f = append(*f, v); return nil }

type result struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Payload string `json:"payload"`
	Details int    `json:"details"`
}

func main() {
	socket := flag.String("socket", "", "creditd socket path")
	service := flag.String("service", "", "fully-qualified service name")
	method := flag.String("method", "", "method name")
	payloadHex := flag.String("payload", "", "request payload, hex")
	payloadSize := flag.Int("payload-size", -1, "send this many 0x00 bytes instead of -payload")
	timeout := flag.Duration("timeout", 5*time.Second, "call deadline (sets timeout_nano); 0 for none")
	timeoutNano := flag.Int64("timeout-nano", 0, "if non-zero, send this timeout_nano verbatim")
	var md metadataFlag
	flag.Var(&md, "md", "metadata key=value (repeatable)")
	flag.Parse()

	var payload []byte
	if *payloadSize >= 0 {
		payload = make([]byte, *payloadSize)
	} else {
		var err error
		if payload, err = hex.DecodeString(*payloadHex); err != nil {
			fmt.Fprintln(os.Stderr, "bad -payload:", err)
			os.Exit(2)
		}
	}

	conn, err := net.DialTimeout("unix", *socket, 5*time.Second)
	if err != nil {
		emit(result{Code: -1, Message: err.Error()})
		return
	}
	var opts []ttrpc.ClientOpts
	if *timeoutNano != 0 {
		forced := *timeoutNano
		opts = append(opts, ttrpc.WithUnaryClientInterceptor(
			func(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
				req.TimeoutNano = forced
				return invoke(ctx, req, resp)
			}))
	}
	client := ttrpc.NewClient(conn, opts...)
	defer client.Close()

	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
	}
	defer cancel()
	if len(md) > 0 {
		meta := ttrpc.MD{}
		for _, kv := range md {
			parts := strings.SplitN(kv, "=", 2)
			if len(parts) != 2 {
				fmt.Fprintln(os.Stderr, "bad -md:", kv)
				os.Exit(2)
			}
			meta.Append(parts[0], parts[1])
		}
		ctx = ttrpc.WithMetadata(ctx, meta)
	}

	req := &rawMessage{data: payload}
	resp := &rawMessage{}
	if err := client.Call(ctx, *service, *method, req, resp); err != nil {
		if st, ok := status.FromError(err); ok {
			emit(result{Code: int(st.Code()), Message: st.Message(), Details: len(st.Proto().GetDetails())})
		} else {
			emit(result{Code: -1, Message: err.Error()})
		}
		return
	}
	emit(result{Code: 0, Payload: hex.EncodeToString(resp.data)})
}

func emit(r result) {
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
