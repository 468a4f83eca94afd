// Command example submits one master order to a running gateway and prints its fills.
//
//	make run                                        # in one terminal, from the repo root
//	go run ./cmd/example -volume 1.00 -symbol EURUSD # in another, from clients/go
//
// The API key comes from MAM_API_KEY, else from var/admin.key in the repository root (the admin
// key `make run` creates on first start), found by looking up from the working directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mam-gateway/mam-gateway/clients/go/apikey"
	mamv1 "github.com/mam-gateway/mam-gateway/clients/go/mamv1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "gateway address")
	groupName := flag.String("group", "demo", "group to allocate over")
	symbol := flag.String("symbol", "EURUSD", "symbol")
	sideName := flag.String("side", "buy", "buy or sell")
	volume := flag.String("volume", "1.00", "master volume in lots, a decimal string")
	flag.Parse()
	side := mamv1.Side_SIDE_BUY
	if *sideName == "sell" {
		side = mamv1.Side_SIDE_SELL
	}

	options := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	key, err := apiKey()
	if err != nil {
		log.Fatal(err)
	}
	if key != "" {
		options = append(options, grpc.WithPerRPCCredentials(apikey.Bearer(key)))
	}
	conn, err := grpc.NewClient(*target, options...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	accounts := mamv1.NewAccountServiceClient(conn)
	trading := mamv1.NewTradingServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	groupID, err := findGroup(ctx, accounts, *groupName)
	if err != nil {
		log.Fatal(err)
	}

	// Subscribe first; the first message (a heartbeat) says the stream is live.
	fills, err := trading.SubscribeFills(ctx, &mamv1.SubscribeFillsRequest{LiveOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := fills.Recv(); err != nil {
		log.Fatal(err)
	}

	submitted, err := trading.SubmitMasterOrder(ctx, &mamv1.SubmitMasterOrderRequest{
		Order: &mamv1.MasterOrderSpec{
			ClientOrderId: fmt.Sprintf("go-example-%d", time.Now().UnixNano()),
			GroupId:       groupID,
			Symbol:        *symbol,
			Side:          side,
			Type:          mamv1.OrderType_ORDER_TYPE_MARKET,
			Volume:        *volume,
		},
	})
	if err != nil {
		printError(err)
		os.Exit(1)
	}
	master := submitted.GetMasterOrder()
	fmt.Printf("master order %s: %s %s over %d child orders\n",
		master.GetMasterOrderId(), *volume, *symbol, master.GetChildCount())
	for _, line := range master.GetAllocation().GetLines() {
		var reasons []string
		for _, r := range line.GetReasons() {
			reasons = append(reasons, strings.TrimPrefix(r.String(), "ALLOCATION_REASON_"))
		}
		v := line.GetVolume()
		if v == "" {
			v = "0"
		}
		fmt.Printf("  %s  equity %10s  target %13s  -> %6s  %s\n", line.GetAccountId(),
			line.GetBasis(), line.GetTargetVolume(), v, strings.Join(reasons, ","))
	}

	for received := int32(0); received < master.GetChildCount(); {
		message, err := fills.Recv()
		if err != nil {
			log.Fatal(err)
		}
		for _, fill := range message.GetBatch().GetFills() {
			if fill.GetMasterOrderId() != master.GetMasterOrderId() {
				continue
			}
			received++
			fmt.Printf("fill #%d: %s %s @ %s (slippage %s points)\n", fill.GetSequence(),
				fill.GetAccountId(), fill.GetVolume(), fill.GetPrice(), fill.GetSlippagePoints())
		}
		if message.GetHeartbeatSequence() != 0 {
			// A quiet stream: stop once the order has ended (some children may be rejected).
			got, err := trading.GetMasterOrder(ctx, &mamv1.GetMasterOrderRequest{MasterOrderId: master.GetMasterOrderId()})
			if err != nil {
				log.Fatal(err)
			}
			if got.GetMasterOrder().GetState() >= mamv1.MasterOrderState_MASTER_ORDER_STATE_FILLED {
				break
			}
		}
	}

	got, err := trading.GetMasterOrder(ctx, &mamv1.GetMasterOrderRequest{MasterOrderId: master.GetMasterOrderId()})
	if err != nil {
		log.Fatal(err)
	}
	final := got.GetMasterOrder()
	fmt.Printf("%s: filled %s lots at %s average, %d filled / %d rejected, dispatch skew %d ms\n",
		final.GetState(), final.GetFilledVolume(), final.GetAverageFillPrice(),
		final.GetFilledChildCount(), final.GetRejectedChildCount(),
		final.GetExecution().GetDispatchSkew().AsDuration().Milliseconds())
}

// apiKey returns $MAM_API_KEY, else the key in var/admin.key of the working directory or the
// nearest directory above it that has one (the repository root's, from clients/go), else "".
func apiKey() (string, error) {
	if key := os.Getenv("MAM_API_KEY"); key != "" {
		return key, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "var", "admin.key"))
		if err == nil {
			return strings.TrimSpace(string(data)), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}

func findGroup(ctx context.Context, accounts mamv1.AccountServiceClient, name string) (string, error) {
	for token := ""; ; {
		page, err := accounts.ListGroups(ctx, &mamv1.ListGroupsRequest{PageToken: token})
		if err != nil {
			return "", err
		}
		for _, g := range page.GetGroups() {
			if g.GetName() == name {
				return g.GetGroupId(), nil
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			return "", fmt.Errorf("no group named %q", name)
		}
	}
}

// printError prints a failed call's status with its ErrorInfo reason and field violations.
func printError(err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "rejected: %s: %s\n", st.Code(), st.Message())
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(os.Stderr, "  reason %s (%s)\n", d.GetReason(), d.GetDomain())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(os.Stderr, "  %s: %s\n", v.GetField(), v.GetDescription())
			}
		}
	}
}
