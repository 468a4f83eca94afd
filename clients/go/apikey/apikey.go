// Package apikey sends a mam-gateway API key with every call, as the gateway asks
// (docs/access-control.md): metadata `authorization: Bearer <key>`.
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpc.WithPerRPCCredentials(apikey.Bearer(key)))
package apikey

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// Bearer returns per-RPC credentials that put key in the `authorization` metadata of every
// call, unary and streaming.
//
// They work over an insecure channel too: the gateway accepts plaintext only on loopback (or
// behind a TLS-terminating proxy), so anywhere else the channel is TLS and the key travels
// encrypted.
func Bearer(key string) credentials.PerRPCCredentials {
	return bearer{header: "Bearer " + key}
}

type bearer struct{ header string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
