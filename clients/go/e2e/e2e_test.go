// Package e2e drives the generated Go client against a real gateway process.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mam-gateway/mam-gateway/clients/go/apikey"
	mamv1 "github.com/mam-gateway/mam-gateway/clients/go/mamv1"
)

func TestClientAgainstGateway(t *testing.T) {
	gw := startGateway(t)
	conn, err := grpc.NewClient(gw.target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(apikey.Bearer(gw.apiKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	accounts := mamv1.NewAccountServiceClient(conn)
	trading := mamv1.NewTradingServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	unique := time.Now().UnixNano()

	t.Run("without a key", func(t *testing.T) {
		anonymous, err := grpc.NewClient(gw.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer anonymous.Close()
		_, err = mamv1.NewAccountServiceClient(anonymous).ListGroups(ctx, &mamv1.ListGroupsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ListGroups without a key: got %v, want UNAUTHENTICATED", err)
		}
		errorInfo, _ := statusDetails(t, err)
		if errorInfo.GetDomain() != "mam-gateway" || errorInfo.GetReason() != "API_KEY_MISSING" {
			t.Errorf("ErrorInfo %v, want reason API_KEY_MISSING in domain mam-gateway", errorInfo)
		}
	})

	// An account, then every account page by page: the new one is listed exactly once.
	name := fmt.Sprintf("go-client-%d", unique)
	created, err := accounts.CreateAccount(ctx, &mamv1.CreateAccountRequest{Account: &mamv1.Account{
		Name:      name,
		Platform:  mamv1.Platform_PLATFORM_SIMULATED,
		Login:     7_000_000 + unique%1_000_000,
		Currency:  "USD",
		Simulated: &mamv1.SimulatedAccount{InitialBalance: "12345.67"},
	}})
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	account := created.GetAccount()
	if account.GetAccountId() == "" || account.GetName() != name ||
		account.GetPlatform() != mamv1.Platform_PLATFORM_SIMULATED {
		t.Fatalf("CreateAccount returned %v", account)
	}
	if got := decimal(t, account.GetSnapshot().GetBalance()); got.Cmp(decimal(t, "12345.67")) != 0 {
		t.Errorf("new account balance %s, want 12345.67", account.GetSnapshot().GetBalance())
	}
	seen := map[string]int{}
	pages := 0
	for token := ""; ; {
		page, err := accounts.ListAccounts(ctx, &mamv1.ListAccountsRequest{PageSize: 6, PageToken: token})
		if err != nil {
			t.Fatalf("ListAccounts: %v", err)
		}
		pages++
		if len(page.GetAccounts()) > 6 {
			t.Fatalf("page of %d accounts, asked for 6", len(page.GetAccounts()))
		}
		for _, a := range page.GetAccounts() {
			seen[a.GetAccountId()]++
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if seen[account.GetAccountId()] != 1 {
		t.Errorf("new account listed %d times", seen[account.GetAccountId()])
	}
	total := 0
	for id, n := range seen {
		total += n
		if n != 1 {
			t.Errorf("account %s listed %d times", id, n)
		}
	}
	if total < 21 || pages != (total+5)/6 {
		t.Errorf("%d accounts over %d pages; want the 20 demo accounts + 1 at 6 a page", total, pages)
	}

	group := findGroup(ctx, t, accounts, "demo")
	groupID := group.GetGroupId()
	spec := func(volume, clientOrderID string) *mamv1.MasterOrderSpec {
		return &mamv1.MasterOrderSpec{
			ClientOrderId: clientOrderID,
			GroupId:       groupID,
			Symbol:        "EURUSD",
			Side:          mamv1.Side_SIDE_BUY,
			Type:          mamv1.OrderType_ORDER_TYPE_MARKET,
			Volume:        volume,
		}
	}

	// The preview: lines on the lot step that add up to the allocated volume.
	preview, err := trading.PreviewAllocation(ctx, &mamv1.PreviewAllocationRequest{Order: spec("1.00", "")})
	if err != nil {
		t.Fatalf("PreviewAllocation: %v", err)
	}
	allocation := preview.GetAllocation()
	if decimal(t, allocation.GetRequestedVolume()).Cmp(decimal(t, "1")) != 0 {
		t.Errorf("requested volume %q, want 1.00", allocation.GetRequestedVolume())
	}
	previewed := map[string]string{}
	sum := new(big.Rat)
	for _, line := range allocation.GetLines() {
		previewed[line.GetAccountId()] = line.GetVolume()
		if line.GetVolume() != "" {
			sum.Add(sum, decimal(t, line.GetVolume()))
		}
	}
	if len(allocation.GetLines()) != len(group.GetMembers()) || sum.Cmp(decimal(t, allocation.GetAllocatedVolume())) != 0 ||
		sum.Sign() <= 0 {
		t.Fatalf("preview: %d lines adding up to %s, allocated %q", len(allocation.GetLines()),
			sum.FloatString(2), allocation.GetAllocatedVolume())
	}

	// A live fill stream: its first message, a heartbeat, says it is live.
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	fills, err := trading.SubscribeFills(streamCtx, &mamv1.SubscribeFillsRequest{LiveOnly: true})
	if err != nil {
		t.Fatalf("SubscribeFills: %v", err)
	}
	first, err := fills.Recv()
	if err != nil {
		t.Fatalf("SubscribeFills first message: %v", err)
	}
	if len(first.GetBatch().GetFills()) != 0 {
		t.Fatalf("first message on a live-only stream carries fills: %v", first)
	}

	// The order, then every one of its fills on the stream.
	clientOrderID := fmt.Sprintf("go-%d", unique)
	submitted, err := trading.SubmitMasterOrder(ctx, &mamv1.SubmitMasterOrderRequest{Order: spec("1.00", clientOrderID)})
	if err != nil {
		t.Fatalf("SubmitMasterOrder: %v", err)
	}
	master := submitted.GetMasterOrder()
	if master.GetMasterOrderId() == "" || master.GetChildCount() <= 0 ||
		master.GetSpec().GetClientOrderId() != clientOrderID {
		t.Fatalf("SubmitMasterOrder returned %v", master)
	}
	for _, line := range master.GetAllocation().GetLines() {
		if want, ok := previewed[line.GetAccountId()]; !ok || want != line.GetVolume() {
			t.Errorf("account %s: submitted %q, previewed %q", line.GetAccountId(), line.GetVolume(), want)
		}
	}
	children := map[string]bool{}
	filled := new(big.Rat)
	var lastSequence uint64
	deadline := time.AfterFunc(30*time.Second, stopStream)
	defer deadline.Stop()
	for len(children) < int(master.GetChildCount()) {
		message, err := fills.Recv()
		if err != nil {
			t.Fatalf("fill stream after %d of %d fills: %v", len(children), master.GetChildCount(), err)
		}
		for _, fill := range message.GetBatch().GetFills() {
			if fill.GetSequence() <= lastSequence {
				t.Errorf("fill sequence %d after %d", fill.GetSequence(), lastSequence)
			}
			lastSequence = fill.GetSequence()
			if fill.GetMasterOrderId() != master.GetMasterOrderId() {
				continue
			}
			if children[fill.GetChildOrderId()] {
				t.Errorf("second fill of child %s", fill.GetChildOrderId())
			}
			children[fill.GetChildOrderId()] = true
			filled.Add(filled, decimal(t, fill.GetVolume()))
		}
	}
	if filled.Cmp(decimal(t, master.GetAllocation().GetAllocatedVolume())) != 0 {
		t.Errorf("fills add up to %s lots, allocated %s", filled.FloatString(2),
			master.GetAllocation().GetAllocatedVolume())
	}
	got, err := trading.GetMasterOrder(ctx, &mamv1.GetMasterOrderRequest{MasterOrderId: master.GetMasterOrderId()})
	if err != nil {
		t.Fatalf("GetMasterOrder: %v", err)
	}
	if got.GetMasterOrder().GetState() != mamv1.MasterOrderState_MASTER_ORDER_STATE_FILLED ||
		got.GetMasterOrder().GetFilledChildCount() != master.GetChildCount() {
		t.Errorf("after every fill: state %v, %d of %d children filled", got.GetMasterOrder().GetState(),
			got.GetMasterOrder().GetFilledChildCount(), master.GetChildCount())
	}
	stopStream()
	if _, err := fills.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, io.EOF) {
		t.Errorf("cancelled stream ended with %v", err)
	}

	// Bad input: INVALID_ARGUMENT with a google.rpc.Status in grpc-status-details-bin.
	_, err = trading.SubmitMasterOrder(ctx, &mamv1.SubmitMasterOrderRequest{Order: spec("abc", clientOrderID+"-bad")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("volume \"abc\": got %v, want INVALID_ARGUMENT", err)
	}
	errorInfo, badRequest := statusDetails(t, err)
	if errorInfo == nil || errorInfo.GetDomain() != "mam-gateway" || errorInfo.GetReason() == "" {
		t.Errorf("ErrorInfo: %v", errorInfo)
	}
	var violations []string
	for _, v := range badRequest.GetFieldViolations() {
		violations = append(violations, v.GetField())
	}
	if len(violations) != 1 || violations[0] != "order.volume" {
		t.Errorf("field violations %v, want [order.volume]", violations)
	}
}

// statusDetails decodes the google.rpc.Status details (grpc-status-details-bin) of a failed call.
func statusDetails(t *testing.T, err error) (*errdetails.ErrorInfo, *errdetails.BadRequest) {
	t.Helper()
	var errorInfo *errdetails.ErrorInfo
	var badRequest *errdetails.BadRequest
	for _, detail := range status.Convert(err).Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			errorInfo = d
		case *errdetails.BadRequest:
			badRequest = d
		case error:
			t.Errorf("undecodable status detail: %v", d)
		}
	}
	return errorInfo, badRequest
}

func findGroup(ctx context.Context, t *testing.T, accounts mamv1.AccountServiceClient, name string) *mamv1.Group {
	t.Helper()
	for token := ""; ; {
		page, err := accounts.ListGroups(ctx, &mamv1.ListGroupsRequest{PageToken: token})
		if err != nil {
			t.Fatalf("ListGroups: %v", err)
		}
		for _, g := range page.GetGroups() {
			if g.GetName() == name {
				return g
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			t.Fatalf("no group named %q", name)
		}
	}
}

func decimal(t *testing.T, s string) *big.Rat {
	t.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a decimal: %q", s)
	}
	return r
}
