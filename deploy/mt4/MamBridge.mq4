//+------------------------------------------------------------------+
//| MamBridge.mq4                                                     |
//| The MT4 side of the mam-gateway bridge (protocol versions 1..2,   |
//| docs/mt4-bridge.md): connects OUT to the gateway over TCP, says   |
//| hello with the account's login and token, then executes the       |
//| gateway's requests one at a time and answers each with the same   |
//| id; in protocol 2 it also pushes its trade pool as soon as it     |
//| changes. Needs "Allow DLL imports" (Winsock) and AutoTrading.     |
//| It cannot run on MetaQuotes' Virtual Hosting (no DLL calls there).|
//+------------------------------------------------------------------+
#property copyright "mam-gateway"
#property version   "1.10"
#property description "Bridge to the mam-gateway: executes its orders, reports orders and account."
#property strict

#include <stdlib.mqh>   // ErrorDescription()

//--- inputs
input string BridgeHost             = "127.0.0.1"; // Gateway bridge address (IPv4)
input int    BridgePort             = 5870;        // Gateway bridge port
input string BridgeToken            = "";          // Token of this login (from the gateway's operator, 16+ characters)
input int    TimerMilliseconds      = 20;          // How often the socket is polled
input int    ReconnectSeconds       = 5;           // Wait between connection attempts
input int    TradeContextWaitMs     = 5000;        // Longest wait for a busy trade context (then 146)
input int    PushIntervalMs         = 1000;        // Least time between account pushes (and order pushes in protocol 1)
input bool   PushTradeEvents        = true;        // Push each change of the orders at once (protocol 2); false: the gateway asks (protocol 1)
input bool   SendStopsSeparately    = false;       // Market orders: open first, then set SL/TP (ECN brokers)
input bool   UseFixedUtcOffset      = false;       // Use ServerUtcOffsetMinutes instead of measuring
input int    ServerUtcOffsetMinutes = 0;           // Broker server time minus UTC, when fixed

//--- protocol
#define PROTOCOL_MIN        1
#define PROTOCOL_MAX        2
// From this version on the trade pool is pushed at every change, numbered (orders_changed.seq),
// and the number is given with the orders and trade_result answers.
#define TRADE_EVENTS_PROTOCOL 2
#define EA_VERSION          "1.10"
#define DEFAULT_MAX_FRAME   1048576
#define MAX_FRAMES_PER_TICK 64
// The gateway refuses shorter tokens (gateway/domain/peer_authentication.py).
#define MIN_TOKEN_LENGTH    16
// A connection attempt not finished by then is abandoned (the next one comes after
// ReconnectSeconds): Windows' own connect timeout is about 21 s.
#define CONNECT_TIMEOUT_MS  10000
// Broker server time minus UTC is within this (UTC-12 .. UTC+14): a measurement outside it
// comes from a wrong clock and is not used.
#define MAX_UTC_OFFSET_SECONDS 50400

//--- Winsock (MT4 terminals are 32-bit: a SOCKET is 32 bits)
#define AF_INET        2
#define SOCK_STREAM    1
#define IPPROTO_TCP    6
#define TCP_NODELAY    1
#define INVALID_SOCKET -1
#define SOCKET_ERROR   -1
#define FIONBIO        0x8004667E
#define WSAEWOULDBLOCK 10035
#define INADDR_NONE    0xFFFFFFFF
#define SOL_SOCKET     0xFFFF
#define SO_ERROR       0x1007
#define FD_SETSIZE     64

//--- MT4 error codes answered by the EA itself
#define ERR_EA_TRADE_CONTEXT_BUSY 146
#define ERR_EA_INVALID_TICKET     4108
#define ERR_EA_INVALID_PARAMETERS 3
#define ERR_EA_UNKNOWN_SYMBOL     4106

struct SockAddrIn
  {
   short             family;
   ushort            port;
   uint              address;
   uint              zero1;
   uint              zero2;
  };

// Winsock's fd_set and timeval, for select().
struct FdSet
  {
   uint              count;
   int               sockets[FD_SETSIZE];
  };

struct TimeVal
  {
   int               seconds;
   int               microseconds;
  };

#import "ws2_32.dll"
int    WSAStartup(ushort version, uchar &data[]);
int    WSACleanup();
int    socket(int af, int type, int protocol);
int    connect(int s, SockAddrIn &name, int namelen);
int    select(int nfds, FdSet &readable, FdSet &writable, FdSet &failed, TimeVal &timeout);
int    getsockopt(int s, int level, int option, int &value, int &length);
int    send(int s, uchar &buffer[], int length, int flags);
int    recv(int s, uchar &buffer[], int length, int flags);
int    ioctlsocket(int s, uint command, uint &argument);
int    setsockopt(int s, int level, int option, int &value, int length);
int    closesocket(int s);
int    WSAGetLastError();
uint   inet_addr(uchar &text[]);
ushort htons(ushort value);
#import

//--- connection state (all of it set again by ResetState() in OnInit)
bool   g_wsaStarted = false;
int    g_socket = INVALID_SOCKET;
bool   g_connecting = false;
uint   g_connectStarted = 0;
bool   g_welcomed = false;
bool   g_giveUp = false;
uint   g_lastAttempt = 0;
uint   g_retryMs = 0;
uint   g_connectedAt = 0;
uint   g_lastReceived = 0;
uint   g_lastSent = 0;
uint   g_lastPush = 0;
int    g_heartbeatMs = 5000;
int    g_timeoutMs = 20000;
int    g_maxFrame = DEFAULT_MAX_FRAME;
uchar  g_in[];
int    g_inLen = 0;
uchar  g_chunk[65536];
string g_lastAccountSignature = "";
bool   g_lastTooLarge = false;
int    g_protocol = 0;               // the version the gateway welcomed this session with

//--- the trade pool as last seen (BookChanged), and its sequence number
long     g_bookSeq = 0;              // one more for each change of the pool seen; never goes back
bool     g_bookUnsent = false;       // the pool at g_bookSeq is still to be pushed
int      g_bookCount = -1;           // -1: not looked at yet
int      g_bookTickets[];
int      g_bookTypes[];
double   g_bookLots[];
double   g_bookOpenPrices[];
double   g_bookStopLosses[];
double   g_bookTakeProfits[];
datetime g_bookExpirations[];

//--- server time -> UTC
int      g_utcOffset = 0;            // broker server time minus UTC, in seconds
bool     g_utcOffsetKnown = false;   // measured, saved from an earlier run, or fixed
int      g_utcOffsetLookedUpFor = 0; // the login whose saved offset was looked for
datetime g_lastServerTime = 0;       // TimeCurrent() when last looked at
datetime g_lastServerTimeAt = 0;     // TimeLocal() when g_lastServerTime was taken
datetime g_serverTimeMovedAt = 0;    // TimeLocal() when TimeCurrent() last moved; 0: not since OnInit

//--- the journal: ticket -> root (+ the root's tag), closed ticket -> closing tag
int    g_journal = INVALID_HANDLE;
int    g_rootTickets[];
int    g_roots[];
string g_rootTags[];
int    g_rootCount = 0;
int    g_closeTickets[];
int    g_closedBy[];
string g_closeTags[];
int    g_closeCount = 0;

//+------------------------------------------------------------------+
//| Lifecycle                                                         |
//+------------------------------------------------------------------+
int OnInit()
  {
   // Changing the inputs (or the chart's symbol, or the account) runs OnInit again without
   // reloading the EA: its globals keep the last run's values (a BridgeHost given up on, a
   // 60 s wait after a refusal, a stale server time). Everything starts afresh here.
   ResetState();
   if(!IsDllsAllowed())
     {
      Alert("MamBridge: allow DLL imports for this EA (Common tab; Winsock is used to reach the gateway)");
      return(INIT_FAILED);
     }
   if(StringLen(BridgeToken) < MIN_TOKEN_LENGTH)
     {
      Alert("MamBridge: BridgeToken must hold at least ", MIN_TOKEN_LENGTH, " characters");
      return(INIT_PARAMETERS_INCORRECT);
     }
   if(UseFixedUtcOffset && MathAbs(ServerUtcOffsetMinutes) * 60 > MAX_UTC_OFFSET_SECONDS)
     {
      Alert("MamBridge: ServerUtcOffsetMinutes must be within -840..840");
      return(INIT_PARAMETERS_INCORRECT);
     }
   uchar wsaData[400];
   if(WSAStartup(0x0202, wsaData) != 0)
     {
      Alert("MamBridge: WSAStartup failed");
      return(INIT_FAILED);
     }
   g_wsaStarted = true;   // OnDeinit (also run after a failed OnInit) calls WSACleanup
   if(AccountNumber() > 0)
      JournalOpen();
   SeedUtcOffset();
   if(!EventSetMillisecondTimer(TimerMilliseconds > 0 ? TimerMilliseconds : 1))
     {
      Alert("MamBridge: cannot start the timer");
      return(INIT_FAILED);
     }
   return(INIT_SUCCEEDED);
  }

void OnDeinit(const int reason)
  {
   EventKillTimer();
   Disconnect("EA stopped (deinit reason " + IntegerToString(reason) + ")", true);
   if(g_journal != INVALID_HANDLE)
     {
      FileClose(g_journal);
      g_journal = INVALID_HANDLE;
     }
   // Each successful WSAStartup is paired with one WSACleanup.
   if(g_wsaStarted)
     {
      WSACleanup();
      g_wsaStarted = false;
     }
  }

// The state of a fresh start (see OnInit). OnDeinit has closed any socket of the last run.
void ResetState()
  {
   g_socket = INVALID_SOCKET;
   g_connecting = false;
   g_connectStarted = 0;
   g_welcomed = false;
   g_giveUp = false;
   g_lastAttempt = 0;
   g_retryMs = 0;
   g_connectedAt = 0;
   g_lastReceived = 0;
   g_lastSent = 0;
   g_lastPush = 0;
   g_heartbeatMs = 5000;
   g_timeoutMs = 20000;
   g_maxFrame = DEFAULT_MAX_FRAME;
   g_inLen = 0;
   g_lastAccountSignature = "";
   g_lastTooLarge = false;
   g_protocol = 0;
   g_bookSeq = 0;
   g_bookUnsent = false;
   g_bookCount = -1;
   g_utcOffset = 0;
   g_utcOffsetKnown = false;
   g_utcOffsetLookedUpFor = 0;
   g_lastServerTime = 0;
   g_lastServerTimeAt = 0;
   g_serverTimeMovedAt = 0;
  }

void OnTick()
  {
   // All the work happens in OnTimer: requests must not wait for a tick.
  }

void OnTimer()
  {
   UpdateUtcOffset();
   if(g_giveUp)
      return;
   uint now = GetTickCount();
   if(g_socket == INVALID_SOCKET)
     {
      uint wait = (uint)(ReconnectSeconds > 0 ? ReconnectSeconds * 1000 : 1000);
      if(g_retryMs > wait)
         wait = g_retryMs;
      if(now - g_lastAttempt >= wait)
         Connect();
      return;
     }
   if(g_connecting)
     {
      PollConnect();
      return;
     }
   if(!ReceiveAndHandle())
      return;
   now = GetTickCount();
   if(!g_welcomed)
     {
      if(now - g_connectedAt > 10000)
         Disconnect("no welcome from the gateway", false);
      return;
     }
   if(now - g_lastReceived > (uint)g_timeoutMs)
     {
      Disconnect("heartbeat timeout: nothing from the gateway", true);
      return;
     }
   if(now - g_lastSent >= (uint)g_heartbeatMs)
      SendMessage("{\"type\":\"heartbeat\"}");
   // Protocol 2: a change of the trade pool is pushed on the tick it is seen (the gateway
   // copies a source's trades from it); looking costs a few comparisons per order.
   if(g_protocol >= TRADE_EVENTS_PROTOCOL)
      PushBook();
   if(now - g_lastPush >= (uint)PushIntervalMs)
     {
      g_lastPush = now;
      PushChanges();
     }
  }

//+------------------------------------------------------------------+
//| Connection                                                        |
//+------------------------------------------------------------------+
bool Connect()
  {
   g_lastAttempt = GetTickCount();
   if(AccountNumber() <= 0)
      return(false);   // not logged in yet
   if(g_journal == INVALID_HANDLE)
      JournalOpen();
   uchar host[];
   string address = (BridgeHost == "localhost") ? "127.0.0.1" : BridgeHost;
   StringToCharArray(address, host);
   uint ip = inet_addr(host);
   if(ip == (uint)INADDR_NONE)
     {
      Alert("MamBridge: BridgeHost must be an IPv4 address, not ", BridgeHost);
      g_giveUp = true;
      return(false);
     }
   int s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
   if(s == INVALID_SOCKET)
     {
      Print("MamBridge: socket() failed, WSA error ", WSAGetLastError());
      return(false);
     }
   // Non-blocking before connect: a blocking connect to a gateway that is down holds the EA's
   // only thread (timer, trades) for Windows' connect timeout, about 21 s, at every attempt.
   // Reading and sending must not block either. Small frames must leave at once (Nagle would
   // hold them back).
   uint nonBlocking = 1;
   if(ioctlsocket(s, (uint)FIONBIO, nonBlocking) == SOCKET_ERROR)
     {
      Print("MamBridge: cannot make the socket non-blocking, WSA error ", WSAGetLastError());
      closesocket(s);
      return(false);
     }
   int noDelay = 1;
   setsockopt(s, IPPROTO_TCP, TCP_NODELAY, noDelay, 4);
   SockAddrIn target;
   target.family = (short)AF_INET;
   target.port = htons((ushort)BridgePort);
   target.address = ip;
   target.zero1 = 0;
   target.zero2 = 0;
   if(connect(s, target, sizeof(SockAddrIn)) == SOCKET_ERROR)
     {
      int error = WSAGetLastError();
      if(error != WSAEWOULDBLOCK)
        {
         Print("MamBridge: cannot connect to ", address, ":", BridgePort, ", WSA error ", error);
         closesocket(s);
         return(false);
        }
     }
   // Under way (or, on loopback, maybe done): PollConnect sees it finish on the next ticks.
   g_socket = s;
   g_connecting = true;
   g_connectStarted = GetTickCount();
   return(true);
  }

// Whether the connection attempt under way has finished: select() with no wait reports the
// socket writable once connected, failed once refused or unreachable. Says hello once
// connected; abandons the attempt on failure or after CONNECT_TIMEOUT_MS.
void PollConnect()
  {
   FdSet readable;
   readable.count = 0;
   FdSet writable;
   writable.count = 1;
   writable.sockets[0] = g_socket;
   FdSet failed;
   failed.count = 1;
   failed.sockets[0] = g_socket;
   TimeVal noWait;
   noWait.seconds = 0;
   noWait.microseconds = 0;
   int ready = select(0, readable, writable, failed, noWait);
   if(ready == SOCKET_ERROR)
     {
      AbandonConnect("select failed, WSA error " + IntegerToString(WSAGetLastError()));
      return;
     }
   if(ready > 0 && failed.count > 0)
     {
      int error = 0;
      int length = 4;
      getsockopt(g_socket, SOL_SOCKET, SO_ERROR, error, length);
      AbandonConnect("WSA error " + IntegerToString(error));
      return;
     }
   if(ready > 0 && writable.count > 0)
     {
      g_connecting = false;
      SayHello();
      return;
     }
   if(GetTickCount() - g_connectStarted > CONNECT_TIMEOUT_MS)
      AbandonConnect("no answer within " + IntegerToString(CONNECT_TIMEOUT_MS / 1000) + " s");
  }

void AbandonConnect(const string why)
  {
   Print("MamBridge: cannot connect to ", BridgeHost, ":", BridgePort, ": ", why);
   closesocket(g_socket);
   g_socket = INVALID_SOCKET;
   g_connecting = false;
   g_lastAttempt = GetTickCount();
  }

bool SayHello()
  {
   g_welcomed = false;
   g_inLen = 0;
   g_connectedAt = GetTickCount();
   g_lastReceived = g_connectedAt;
   string hello = "{\"type\":\"hello\""
                  + ",\"protocol_min\":" + IntegerToString(PROTOCOL_MIN)
                  + ",\"protocol_max\":" + IntegerToString(PushTradeEvents ? PROTOCOL_MAX : 1)
                  + ",\"login\":" + IntegerToString(AccountNumber())
                  + ",\"server\":" + JsonText(AccountServer())
                  + ",\"token\":" + JsonText(BridgeToken)
                  + ",\"ea_version\":" + JsonText(EA_VERSION)
                  + ",\"terminal_build\":" + IntegerToString(TerminalInfoInteger(TERMINAL_BUILD))
                  + ",\"company\":" + JsonText(AccountCompany())
                  + "}";
   return(SendMessage(hello));
  }

void Disconnect(const string reason, const bool notify)
  {
   if(g_socket == INVALID_SOCKET)
      return;
   if(notify && g_welcomed)
      SendMessage("{\"type\":\"bye\",\"reason\":" + JsonText(reason) + "}");
   if(g_socket == INVALID_SOCKET)
      return;   // sending the goodbye found the connection gone (and closed it)
   closesocket(g_socket);
   g_socket = INVALID_SOCKET;
   g_connecting = false;
   g_welcomed = false;
   g_inLen = 0;
   g_lastAttempt = GetTickCount();
   Print("MamBridge: disconnected: ", reason);
  }

// Sends one frame: the 4-byte big-endian length, then the UTF-8 JSON.
bool SendMessage(const string json)
  {
   if(g_socket == INVALID_SOCKET)
      return(false);
   uchar body[];
   int length = StringToCharArray(json, body, 0, WHOLE_ARRAY, CP_UTF8);
   if(length > 0 && body[length - 1] == 0)
      length--;   // the terminating zero is not part of the payload
   g_lastTooLarge = (length > g_maxFrame);
   if(g_lastTooLarge)
     {
      Print("MamBridge: message of ", length, " bytes above the frame limit, not sent");
      return(false);
     }
   uchar frame[];
   ArrayResize(frame, length + 4);
   frame[0] = (uchar)((length >> 24) & 0xFF);
   frame[1] = (uchar)((length >> 16) & 0xFF);
   frame[2] = (uchar)((length >> 8) & 0xFF);
   frame[3] = (uchar)(length & 0xFF);
   if(length > 0)
      ArrayCopy(frame, body, 4, 0, length);
   int total = length + 4;
   int sent = 0;
   uint started = GetTickCount();
   uchar rest[];
   while(sent < total)
     {
      int result;
      if(sent == 0)
         result = send(g_socket, frame, total, 0);
      else
        {
         ArrayResize(rest, total - sent);
         ArrayCopy(rest, frame, 0, sent, total - sent);
         result = send(g_socket, rest, total - sent, 0);
        }
      if(result == SOCKET_ERROR)
        {
         int error = WSAGetLastError();
         if(error != WSAEWOULDBLOCK || GetTickCount() - started > 10000)
           {
            Disconnect("send failed, WSA error " + IntegerToString(error), false);
            return(false);
           }
         Sleep(1);   // the socket's buffer is full: the gateway is reading
         continue;
        }
      sent += result;
     }
   g_lastSent = GetTickCount();
   return(true);
  }

// Reads what has arrived and handles each complete frame. False once the connection is gone.
bool ReceiveAndHandle()
  {
   while(true)
     {
      int received = recv(g_socket, g_chunk, ArraySize(g_chunk), 0);
      if(received > 0)
        {
         ArrayResize(g_in, g_inLen + received, 65536);
         ArrayCopy(g_in, g_chunk, g_inLen, 0, received);
         g_inLen += received;
         continue;
        }
      if(received == 0)
        {
         Disconnect("the gateway closed the connection", false);
         return(false);
        }
      int error = WSAGetLastError();
      if(error == WSAEWOULDBLOCK)
         break;
      Disconnect("recv failed, WSA error " + IntegerToString(error), false);
      return(false);
     }
   for(int handled = 0; handled < MAX_FRAMES_PER_TICK && g_inLen >= 4; handled++)
     {
      int length = ((int)g_in[0] << 24) | ((int)g_in[1] << 16) | ((int)g_in[2] << 8) | (int)g_in[3];
      if(length <= 0 || length > g_maxFrame)
        {
         Disconnect("protocol error: frame of " + IntegerToString(length) + " bytes", true);
         return(false);
        }
      if(g_inLen < length + 4)
         break;
      string payload = CharArrayToString(g_in, 4, length, CP_UTF8);
      int consumed = length + 4;
      int remaining = g_inLen - consumed;
      if(remaining > 0)
        {
         uchar rest[];
         ArrayCopy(rest, g_in, 0, consumed, remaining);
         ArrayCopy(g_in, rest, 0, 0, remaining);
        }
      g_inLen = remaining;
      HandleMessage(payload);
      if(g_socket == INVALID_SOCKET)
         return(false);
      // Counted once the message is handled: a trade that took longer than timeout_ms (a slow
      // OrderSend) is not silence from the gateway, whose heartbeats wait unread meanwhile.
      g_lastReceived = GetTickCount();
     }
   return(true);
  }

//+------------------------------------------------------------------+
//| Messages                                                          |
//+------------------------------------------------------------------+
void HandleMessage(const string text)
  {
   string keys[];
   string values[];
   if(!JsonParseFlat(text, keys, values))
     {
      Disconnect("protocol error: a message that is not a flat JSON object", true);
      return;
     }
   string type = Field(keys, values, "type");
   if(!g_welcomed)
     {
      HandleHandshake(type, keys, values);
      return;
     }
   if(type == "heartbeat")
      return;
   if(type == "bye")
     {
      Disconnect("the gateway said goodbye: " + Field(keys, values, "reason"), false);
      return;
     }
   string id = Field(keys, values, "id");
   if(id == "")
      return;   // nothing else comes from the gateway without an id
   string answer;
   if(type == "account")
      answer = "{\"type\":\"account\",\"id\":" + JsonText(id) + AccountFields() + "}";
   else if(type == "symbol")
      answer = SymbolAnswer(id, Field(keys, values, "symbol"));
   else if(type == "quote")
      answer = QuoteAnswer(id, Field(keys, values, "symbol"));
   else if(type == "orders")
      answer = OrdersAnswer(id);
   else if(type == "history")
      answer = HistoryAnswer(id, StringToInteger(Field(keys, values, "since")));
   else if(type == "find")
      answer = FindAnswer(id, Field(keys, values, "tag"));
   else if(type == "order_send")
      answer = OrderSendAnswer(id, keys, values);
   else if(type == "order_modify")
      answer = OrderModifyAnswer(id, keys, values);
   else if(type == "order_close")
      answer = OrderCloseAnswer(id, keys, values);
   else if(type == "order_delete")
      answer = OrderDeleteAnswer(id, keys, values);
   else if(type == "order_close_by")
      answer = OrderCloseByAnswer(id, keys, values);
   else
      answer = ErrorAnswer(id, "unknown_type", type);
   // An answer above the frame limit (a long history) is replaced by an error the gateway
   // reports, rather than left unanswered.
   if(!SendMessage(answer) && g_lastTooLarge)
      SendMessage(ErrorAnswer(id, "too_large", "the answer exceeds the frame limit"));
  }

string ErrorAnswer(const string id, const string reason, const string detail)
  {
   return("{\"type\":\"error\",\"id\":" + JsonText(id) + ",\"reason\":" + JsonText(reason)
          + ",\"detail\":" + JsonText(detail) + "}");
  }

void HandleHandshake(const string type, string &keys[], string &values[])
  {
   if(type == "welcome")
     {
      g_welcomed = true;
      g_heartbeatMs = AtLeast(StringToInteger(Field(keys, values, "heartbeat_ms")), 50);
      g_timeoutMs = AtLeast(StringToInteger(Field(keys, values, "timeout_ms")), g_heartbeatMs * 2);
      g_maxFrame = AtLeast(StringToInteger(Field(keys, values, "max_frame")), 1024);
      g_retryMs = 0;
      g_protocol = (int)StringToInteger(Field(keys, values, "protocol"));
      // The new session knows nothing yet: the pool is pushed at once, under its number.
      g_bookUnsent = true;
      g_lastAccountSignature = "";
      g_lastPush = 0;
      Print("MamBridge: connected, protocol ", Field(keys, values, "protocol"), ", session ", Field(keys, values, "session"));
      return;
     }
   string reason = Field(keys, values, "reason");
   string detail = Field(keys, values, "detail");
   if(type == "refused" && reason == "version")
     {
      // Another version of the EA is needed: trying again cannot help.
      g_giveUp = true;
      Alert("MamBridge: the gateway speaks protocol ", Field(keys, values, "protocol_min"), "..",
            Field(keys, values, "protocol_max"), "; this EA ", PROTOCOL_MIN, "..", PROTOCOL_MAX, ". Update the EA.");
     }
   else if(type == "refused" && reason == "unauthorized")
     {
      g_retryMs = 60000;   // the operator may still be registering this login
      Alert("MamBridge: the gateway refused login ", AccountNumber(), ": ", detail, ". Check BridgeToken.");
     }
   else
      Print("MamBridge: the gateway refused the connection: ", reason, ": ", detail);
   Disconnect("refused: " + reason, false);
  }

//+------------------------------------------------------------------+
//| Queries                                                           |
//+------------------------------------------------------------------+
string AccountFields()
  {
   datetime now = TimeCurrent();
   long time = (now == 0) ? (long)TimeGMT() : ToUtc(now);
   return(",\"login\":" + IntegerToString(AccountNumber())
          + ",\"server\":" + JsonText(AccountServer())
          + ",\"company\":" + JsonText(AccountCompany())
          + ",\"currency\":" + JsonText(AccountCurrency())
          + ",\"leverage\":" + IntegerToString(AccountLeverage())
          + ",\"balance\":" + JsonText(Dec(AccountBalance(), 2))
          + ",\"equity\":" + JsonText(Dec(AccountEquity(), 2))
          + ",\"margin\":" + JsonText(Dec(AccountMargin(), 2))
          + ",\"free_margin\":" + JsonText(Dec(AccountFreeMargin(), 2))
          + ",\"trade_allowed\":" + (TradePermitted() ? "true" : "false")
          + ",\"time\":" + IntegerToString(time));
  }

// Whether this EA may trade this account: AutoTrading on in the terminal, "Allow live trading"
// for this EA, and the broker allowing trading and EAs on the account. Not IsTradeAllowed(),
// which is also false while another EA holds the trade context: a passing state, not a
// permission (trades wait for it, TradeContextWaitMs).
bool TradePermitted()
  {
   return(TerminalInfoInteger(TERMINAL_TRADE_ALLOWED) != 0
          && MQLInfoInteger(MQL_TRADE_ALLOWED) != 0
          && AccountInfoInteger(ACCOUNT_TRADE_ALLOWED) != 0
          && AccountInfoInteger(ACCOUNT_TRADE_EXPERT) != 0);
  }

bool KnownSymbol(const string symbol)
  {
   if(symbol == "" || !SymbolSelect(symbol, true))
      return(false);
   return(MarketInfo(symbol, MODE_POINT) > 0);
  }

string SymbolAnswer(const string id, const string symbol)
  {
   string head = "{\"type\":\"symbol\",\"id\":" + JsonText(id) + ",\"symbol\":" + JsonText(symbol);
   if(!KnownSymbol(symbol))
      return(head + ",\"found\":false}");
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   double point = MarketInfo(symbol, MODE_POINT);
   double tickSize = MarketInfo(symbol, MODE_TICKSIZE);
   if(tickSize <= 0)
      tickSize = point;
   return(head + ",\"found\":true"
          + ",\"digits\":" + IntegerToString(digits)
          + ",\"point\":" + JsonText(Dec(point, 10))
          + ",\"contract_size\":" + JsonText(Dec(MarketInfo(symbol, MODE_LOTSIZE), 8))
          + ",\"volume_min\":" + JsonText(Dec(MarketInfo(symbol, MODE_MINLOT), 8))
          + ",\"volume_step\":" + JsonText(Dec(MarketInfo(symbol, MODE_LOTSTEP), 8))
          + ",\"volume_max\":" + JsonText(Dec(MarketInfo(symbol, MODE_MAXLOT), 8))
          + ",\"tick_size\":" + JsonText(Dec(tickSize, 10))
          + ",\"tick_value\":" + JsonText(Dec(MarketInfo(symbol, MODE_TICKVALUE), 8))
          + ",\"stops_level\":" + IntegerToString((int)MarketInfo(symbol, MODE_STOPLEVEL))
          + ",\"freeze_level\":" + IntegerToString((int)MarketInfo(symbol, MODE_FREEZELEVEL))
          + ",\"currency_base\":" + JsonText(SymbolInfoString(symbol, SYMBOL_CURRENCY_BASE))
          + ",\"currency_profit\":" + JsonText(SymbolInfoString(symbol, SYMBOL_CURRENCY_PROFIT))
          + "}");
  }

string QuoteAnswer(const string id, const string symbol)
  {
   string head = "{\"type\":\"quote\",\"id\":" + JsonText(id) + ",\"symbol\":" + JsonText(symbol);
   if(!KnownSymbol(symbol))
      return(head + ",\"found\":false}");
   int digits = SymbolDigits(symbol);
   datetime tickTime = (datetime)MarketInfo(symbol, MODE_TIME);
   return(head + ",\"found\":true"
          + ",\"bid\":" + JsonText(Dec(MarketInfo(symbol, MODE_BID), digits))
          + ",\"ask\":" + JsonText(Dec(MarketInfo(symbol, MODE_ASK), digits))
          + ",\"time\":" + IntegerToString(ToUtc(tickTime))
          + "}");
  }

// The open orders (trade pool) as JSON records, those carrying `tag` only unless it is "".
string OpenOrdersJson(const string tag)
  {
   string items = "";
   int count = 0;
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES) || OrderType() > OP_SELLSTOP)
         continue;
      if(tag != "" && !SelectedCarries(tag))
         continue;
      if(count > 0)
         StringAdd(items, ",");
      StringAdd(items, SelectedOrderJson());
      count++;
     }
   return(items);
  }

// Closed and deleted orders of the history pool (as far as the terminal's Account History
// tab loads it), closed at or after `sinceUtc`, or those carrying `tag` unless it is "".
string HistoryOrdersJson(const long sinceUtc, const string tag)
  {
   datetime since = FromUtc(sinceUtc);
   string items = "";
   int count = 0;
   for(int i = OrdersHistoryTotal() - 1; i >= 0; i--)
     {
      // Balance and credit operations (types 6, 7) are no orders.
      if(!OrderSelect(i, SELECT_BY_POS, MODE_HISTORY) || OrderType() > OP_SELLSTOP)
         continue;
      if(OrderCloseTime() < since)
         continue;
      if(tag != "" && !SelectedCarries(tag))
         continue;
      if(count > 0)
         StringAdd(items, ",");
      StringAdd(items, SelectedOrderJson());
      count++;
     }
   return(items);
  }

// The trade pool, under the number it has as it is read (protocol 2; a gateway of protocol 1
// ignores the field).
string OrdersAnswer(const string id)
  {
   string seq = SeqField();
   return("{\"type\":\"orders\",\"id\":" + JsonText(id) + seq + ",\"orders\":[" + OpenOrdersJson("") + "]}");
  }

string HistoryAnswer(const string id, const long sinceUtc)
  {
   return("{\"type\":\"history\",\"id\":" + JsonText(id) + ",\"orders\":[" + HistoryOrdersJson(sinceUtc, "") + "]}");
  }

string FindAnswer(const string id, const string tag)
  {
   if(tag == "")
      return("{\"type\":\"found\",\"id\":" + JsonText(id) + ",\"orders\":[],\"history\":[]}");
   return("{\"type\":\"found\",\"id\":" + JsonText(id)
          + ",\"orders\":[" + OpenOrdersJson(tag) + "]"
          + ",\"history\":[" + HistoryOrdersJson(0, tag) + "]}");
  }

// Whether the selected order carries `tag`: by the journal (its root's tag, the tag of the
// request that closed it), else by its comment as the broker left it.
bool SelectedCarries(const string tag)
  {
   int ticket = OrderTicket();
   string comment = OrderComment();
   string rootTag = RootTag(RootOf(ticket, comment));
   if(rootTag == tag || CloseTag(ticket) == tag)
      return(true);
   return(rootTag == "" && CommentMatches(comment, tag));
  }

// The selected order as a JSON record (docs/mt4-bridge.md, "Order records").
string SelectedOrderJson()
  {
   int ticket = OrderTicket();
   string symbol = OrderSymbol();
   int type = OrderType();
   double lots = OrderLots();
   double openPrice = OrderOpenPrice();
   datetime openTime = OrderOpenTime();
   double closePrice = OrderClosePrice();
   datetime closeTime = OrderCloseTime();
   double sl = OrderStopLoss();
   double tp = OrderTakeProfit();
   datetime expiration = OrderExpiration();
   int magic = OrderMagicNumber();
   string comment = OrderComment();
   double profit = OrderProfit();
   double swap = OrderSwap();
   double commission = OrderCommission();
   int digits = SymbolDigits(symbol);
   int root = RootOf(ticket, comment);
   int closeIndex = FindSorted(g_closeTickets, g_closeCount, ticket);
   string closeTag = (closeIndex >= 0) ? g_closeTags[closeIndex] : "";
   int closedBy = (closeIndex >= 0) ? g_closedBy[closeIndex] : 0;
   return("{\"ticket\":" + IntegerToString(ticket)
          + ",\"root\":" + IntegerToString(root)
          + ",\"tag\":" + JsonText(RootTag(root))
          + ",\"symbol\":" + JsonText(symbol)
          + ",\"cmd\":" + IntegerToString(type)
          + ",\"lots\":" + JsonText(Dec(lots, 8))
          + ",\"open_price\":" + JsonText(Dec(openPrice, digits))
          + ",\"open_time\":" + IntegerToString(ToUtc(openTime))
          + ",\"close_price\":" + JsonText(Dec(closePrice, digits))
          + ",\"close_time\":" + IntegerToString(ToUtc(closeTime))
          + ",\"sl\":" + JsonText(Dec(sl, digits))
          + ",\"tp\":" + JsonText(Dec(tp, digits))
          + ",\"expiration\":" + IntegerToString(ToUtc(expiration))
          + ",\"magic\":" + IntegerToString(magic)
          + ",\"comment\":" + JsonText(comment)
          + ",\"profit\":" + JsonText(Dec(profit, 2))
          + ",\"swap\":" + JsonText(Dec(swap, 2))
          + ",\"commission\":" + JsonText(Dec(commission, 2))
          + ",\"close_tag\":" + JsonText(closeTag)
          + ",\"closed_by\":" + IntegerToString(closedBy)
          + "}");
  }

string RecordOf(const int ticket)
  {
   if(ticket <= 0 || !OrderSelect(ticket, SELECT_BY_TICKET))
      return("");
   return(SelectedOrderJson());
  }

//+------------------------------------------------------------------+
//| Pushes                                                            |
//+------------------------------------------------------------------+
// Every PushIntervalMs: the account's values when they changed, and in protocol 1 the trade
// pool (protocol 2 pushes it at every tick, OnTimer).
void PushChanges()
  {
   if(g_protocol < TRADE_EVENTS_PROTOCOL)
      PushBook();
   string account = Dec(AccountBalance(), 2) + "|" + Dec(AccountEquity(), 2) + "|" + Dec(AccountMargin(), 2);
   if(account != g_lastAccountSignature)
     {
      if(SendMessage("{\"type\":\"account_changed\"" + AccountFields() + "}"))
         g_lastAccountSignature = account;
     }
  }

// Whether the trade pool differs from when this was last called: a ticket came or went, or an
// order's type (a pending order triggered), lots, open price, SL, TP or expiration changed;
// not profits, which move with every quote. Cheap enough for every timer tick: numbers
// compared in place, no strings built, what is read kept for the next call.
bool BookChanged()
  {
   int total = OrdersTotal();
   if(ArraySize(g_bookTickets) < total)
     {
      ArrayResize(g_bookTickets, total, 64);
      ArrayResize(g_bookTypes, total, 64);
      ArrayResize(g_bookLots, total, 64);
      ArrayResize(g_bookOpenPrices, total, 64);
      ArrayResize(g_bookStopLosses, total, 64);
      ArrayResize(g_bookTakeProfits, total, 64);
      ArrayResize(g_bookExpirations, total, 64);
     }
   bool changed = false;
   int count = 0;
   for(int i = 0; i < total; i++)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES))
         continue;
      int ticket = OrderTicket();
      int type = OrderType();
      double lots = OrderLots();
      double openPrice = OrderOpenPrice();
      double sl = OrderStopLoss();
      double tp = OrderTakeProfit();
      datetime expiration = OrderExpiration();
      if(count >= g_bookCount || g_bookTickets[count] != ticket || g_bookTypes[count] != type
         || g_bookLots[count] != lots || g_bookOpenPrices[count] != openPrice
         || g_bookStopLosses[count] != sl || g_bookTakeProfits[count] != tp
         || g_bookExpirations[count] != expiration)
        {
         changed = true;
         g_bookTickets[count] = ticket;
         g_bookTypes[count] = type;
         g_bookLots[count] = lots;
         g_bookOpenPrices[count] = openPrice;
         g_bookStopLosses[count] = sl;
         g_bookTakeProfits[count] = tp;
         g_bookExpirations[count] = expiration;
        }
      count++;
     }
   if(count != g_bookCount)
      changed = true;
   g_bookCount = count;
   return(changed);
  }

// The number of the trade pool as it is now: one more for each change seen. The gateway reads
// a pool it holds instead of asking only while its number is at least the one a trade left.
long BookSeq()
  {
   if(BookChanged())
     {
      g_bookSeq++;
      g_bookUnsent = true;
     }
   return(g_bookSeq);
  }

string SeqField()
  {
   return(",\"seq\":" + IntegerToString(BookSeq()));
  }

// Pushes the whole trade pool under its number if it changed since the last push (or the
// session is new). Whole, so that a push lost with a connection or merged with the next costs
// nothing. A pool too large for a frame is pushed as its number alone ("too_large"): the
// gateway then asks, and never reads an older pool as the current one.
void PushBook()
  {
   BookSeq();
   if(!g_bookUnsent)
      return;
   JournalRemainders();
   string head = "{\"type\":\"orders_changed\",\"seq\":" + IntegerToString(g_bookSeq);
   if(SendMessage(head + ",\"orders\":[" + OpenOrdersJson("") + "]}"))
      g_bookUnsent = false;
   else if(g_lastTooLarge && g_protocol >= TRADE_EVENTS_PROTOCOL
           && SendMessage(head + ",\"too_large\":true}"))
      g_bookUnsent = false;
  }

//+------------------------------------------------------------------+
//| Trading                                                           |
//+------------------------------------------------------------------+
// Waits for MT4's single trade context (shared by every EA of the terminal), then takes
// fresh prices. False if it stayed busy: the request is answered 146.
bool WaitTradeContext()
  {
   uint started = GetTickCount();
   while(IsTradeContextBusy())
     {
      if(GetTickCount() - started > (uint)TradeContextWaitMs)
         return(false);
      Sleep(10);
     }
   RefreshRates();
   return(true);
  }

string TradeFailed(const string id, const int error, const string symbol, const string detail)
  {
   int digits = SymbolDigits(symbol);
   string bid = "0";
   string ask = "0";
   if(KnownSymbol(symbol))
     {
      bid = Dec(MarketInfo(symbol, MODE_BID), digits);
      ask = Dec(MarketInfo(symbol, MODE_ASK), digits);
     }
   string message = (detail != "") ? detail : ErrorDescription(error);
   return("{\"type\":\"trade_result\",\"id\":" + JsonText(id)
          + ",\"error\":" + IntegerToString(error)
          + ",\"message\":" + JsonText(message)
          + ",\"bid\":" + JsonText(bid) + ",\"ask\":" + JsonText(ask) + SeqField() + "}");
  }

string TradeDone(const string id, const string symbol, const string order, const string remainder,
                 const string opposite, const string message)
  {
   int digits = SymbolDigits(symbol);
   // The number of the pool the trade left: the gateway does not read a pushed pool older.
   string seq = SeqField();
   string result = "{\"type\":\"trade_result\",\"id\":" + JsonText(id)
                   + ",\"error\":0,\"message\":" + JsonText(message) + seq
                   + ",\"bid\":" + JsonText(Dec(MarketInfo(symbol, MODE_BID), digits))
                   + ",\"ask\":" + JsonText(Dec(MarketInfo(symbol, MODE_ASK), digits))
                   // Never a broken frame: a record that could not be read is null, and the
                   // gateway treats the outcome as unknown.
                   + ",\"order\":" + (order == "" ? "null" : order);
   if(remainder != "")
      result += ",\"remainder\":" + remainder;
   if(opposite != "")
      result += ",\"opposite\":" + opposite;
   return(result + "}");
  }

string Malformed(const string id, const string detail)
  {
   return(ErrorAnswer(id, "malformed", detail));
  }

string OrderSendAnswer(const string id, string &keys[], string &values[])
  {
   if(!HasFields(keys, "symbol,cmd,volume,price,slippage,sl,tp,comment,magic,expiration"))
      return(Malformed(id, "order_send: missing fields"));
   string symbol = Field(keys, values, "symbol");
   int cmd = (int)StringToInteger(Field(keys, values, "cmd"));
   string comment = Field(keys, values, "comment");
   if(!KnownSymbol(symbol))
      return(TradeFailed(id, ERR_EA_UNKNOWN_SYMBOL, symbol, "unknown symbol " + symbol));
   if(cmd < OP_BUY || cmd > OP_SELLSTOP)
      return(TradeFailed(id, ERR_EA_INVALID_PARAMETERS, symbol, "unknown operation"));
   if(!WaitTradeContext())
      return(TradeFailed(id, ERR_EA_TRADE_CONTEXT_BUSY, symbol, ""));
   int digits = SymbolDigits(symbol);
   double price = StringToDouble(Field(keys, values, "price"));
   if(cmd == OP_BUY && price == 0)
      price = MarketInfo(symbol, MODE_ASK);
   if(cmd == OP_SELL && price == 0)
      price = MarketInfo(symbol, MODE_BID);
   double sl = NormalizeDouble(StringToDouble(Field(keys, values, "sl")), digits);
   double tp = NormalizeDouble(StringToDouble(Field(keys, values, "tp")), digits);
   bool market = (cmd == OP_BUY || cmd == OP_SELL);
   bool stopsLater = market && SendStopsSeparately && (sl != 0 || tp != 0);
   datetime expiration = 0;
   if(!market)
      expiration = FromUtc(StringToInteger(Field(keys, values, "expiration")));
   double sendSl = sl;
   double sendTp = tp;
   if(stopsLater)
     {
      sendSl = 0.0;
      sendTp = 0.0;
     }
   ResetLastError();
   int ticket = OrderSend(symbol, cmd, NormalizeLots(symbol, StringToDouble(Field(keys, values, "volume"))),
                          NormalizeDouble(price, digits), (int)StringToInteger(Field(keys, values, "slippage")),
                          sendSl, sendTp, comment,
                          (int)StringToInteger(Field(keys, values, "magic")),
                          expiration, clrNONE);
   if(ticket < 0)
      return(TradeFailed(id, GetLastError(), symbol, ""));
   JournalRoot(ticket, ticket, comment);
   string message = "";
   if(stopsLater && OrderSelect(ticket, SELECT_BY_TICKET))
     {
      ResetLastError();
      if(!OrderModify(ticket, OrderOpenPrice(), sl, tp, 0, clrNONE))
        {
         int error = GetLastError();
         message = "opened; setting SL/TP failed: " + IntegerToString(error) + " " + ErrorDescription(error);
        }
     }
   return(TradeDone(id, symbol, RecordOf(ticket), "", "", message));
  }

string OrderModifyAnswer(const string id, string &keys[], string &values[])
  {
   if(!HasFields(keys, "ticket,price,sl,tp,expiration"))
      return(Malformed(id, "order_modify: missing fields"));
   int asked = (int)StringToInteger(Field(keys, values, "ticket"));
   int ticket = asked;
   if(!OrderSelect(asked, SELECT_BY_TICKET))
      return(TradeFailed(id, ERR_EA_INVALID_TICKET, "", "no order #" + IntegerToString(asked)));
   if(OrderCloseTime() != 0)
     {
      // A position partly closed since: its rest lives on under another ticket.
      if(OrderType() > OP_SELL)
         return(TradeFailed(id, ERR_EA_INVALID_TICKET, OrderSymbol(), "order #" + IntegerToString(asked) + " is closed"));
      ticket = LiveTicket(asked);
      if(ticket < 0 || !OrderSelect(ticket, SELECT_BY_TICKET))
         return(TradeFailed(id, ERR_EA_INVALID_TICKET, OrderSymbol(), "position #" + IntegerToString(asked) + " is closed"));
     }
   string symbol = OrderSymbol();
   int type = OrderType();
   int digits = SymbolDigits(symbol);
   double price = StringToDouble(Field(keys, values, "price"));
   if(type <= OP_SELL || price == 0)
      price = OrderOpenPrice();   // an open position's price cannot change
   datetime expiration = 0;
   if(type > OP_SELL)
      expiration = FromUtc(StringToInteger(Field(keys, values, "expiration")));
   if(!WaitTradeContext())
      return(TradeFailed(id, ERR_EA_TRADE_CONTEXT_BUSY, symbol, ""));
   ResetLastError();
   if(!OrderModify(ticket, NormalizeDouble(price, digits),
                   NormalizeDouble(StringToDouble(Field(keys, values, "sl")), digits),
                   NormalizeDouble(StringToDouble(Field(keys, values, "tp")), digits),
                   expiration, clrNONE))
      return(TradeFailed(id, GetLastError(), symbol, ""));
   return(TradeDone(id, symbol, RecordOf(ticket), "", "", ""));
  }

string OrderCloseAnswer(const string id, string &keys[], string &values[])
  {
   if(!HasFields(keys, "ticket,volume,price,slippage,tag"))
      return(Malformed(id, "order_close: missing fields"));
   int asked = (int)StringToInteger(Field(keys, values, "ticket"));
   string tag = Field(keys, values, "tag");
   int ticket = LiveTicket(asked);
   if(ticket < 0 || !OrderSelect(ticket, SELECT_BY_TICKET))
      return(TradeFailed(id, ERR_EA_INVALID_TICKET, "", "position #" + IntegerToString(asked) + " is closed"));
   string symbol = OrderSymbol();
   int type = OrderType();
   datetime openedAt = OrderOpenTime();
   if(type > OP_SELL)
      return(TradeFailed(id, ERR_EA_INVALID_PARAMETERS, symbol, "#" + IntegerToString(ticket) + " is a pending order"));
   int before[];
   int beforeCount = OpenTickets(before);
   if(!WaitTradeContext())
      return(TradeFailed(id, ERR_EA_TRADE_CONTEXT_BUSY, symbol, ""));
   int digits = SymbolDigits(symbol);
   double price = StringToDouble(Field(keys, values, "price"));
   if(price == 0)
      price = (type == OP_BUY) ? MarketInfo(symbol, MODE_BID) : MarketInfo(symbol, MODE_ASK);
   ResetLastError();
   if(!OrderClose(ticket, NormalizeLots(symbol, StringToDouble(Field(keys, values, "volume"))),
                  NormalizeDouble(price, digits), (int)StringToInteger(Field(keys, values, "slippage")), clrNONE))
      return(TradeFailed(id, GetLastError(), symbol, ""));
   JournalClose(ticket, 0, tag);
   int rest = NewTicket(before, beforeCount, symbol, openedAt, openedAt);
   if(rest > 0)
      JournalRoot(rest, RootOfTicket(ticket), "");
   return(TradeDone(id, symbol, RecordOf(ticket), RecordOf(rest), "", ""));
  }

string OrderDeleteAnswer(const string id, string &keys[], string &values[])
  {
   if(!HasFields(keys, "ticket,tag"))
      return(Malformed(id, "order_delete: missing fields"));
   int ticket = (int)StringToInteger(Field(keys, values, "ticket"));
   if(!OrderSelect(ticket, SELECT_BY_TICKET) || OrderCloseTime() != 0 || OrderType() <= OP_SELL)
      return(TradeFailed(id, ERR_EA_INVALID_TICKET, "", "no pending order #" + IntegerToString(ticket)));
   string symbol = OrderSymbol();
   if(!WaitTradeContext())
      return(TradeFailed(id, ERR_EA_TRADE_CONTEXT_BUSY, symbol, ""));
   ResetLastError();
   if(!OrderDelete(ticket, clrNONE))
      return(TradeFailed(id, GetLastError(), symbol, ""));
   JournalClose(ticket, 0, Field(keys, values, "tag"));
   return(TradeDone(id, symbol, RecordOf(ticket), "", "", ""));
  }

string OrderCloseByAnswer(const string id, string &keys[], string &values[])
  {
   if(!HasFields(keys, "ticket,opposite,tag"))
      return(Malformed(id, "order_close_by: missing fields"));
   string tag = Field(keys, values, "tag");
   int ticket = LiveTicket((int)StringToInteger(Field(keys, values, "ticket")));
   int opposite = LiveTicket((int)StringToInteger(Field(keys, values, "opposite")));
   if(ticket < 0 || opposite < 0 || !OrderSelect(ticket, SELECT_BY_TICKET))
      return(TradeFailed(id, ERR_EA_INVALID_TICKET, "", "a position of the close-by is closed"));
   string symbol = OrderSymbol();
   int type = OrderType();
   datetime openedAt = OrderOpenTime();
   datetime oppositeOpenedAt = 0;
   if(OrderSelect(opposite, SELECT_BY_TICKET))
      oppositeOpenedAt = OrderOpenTime();
   int before[];
   int beforeCount = OpenTickets(before);
   if(!WaitTradeContext())
      return(TradeFailed(id, ERR_EA_TRADE_CONTEXT_BUSY, symbol, ""));
   ResetLastError();
   if(!OrderCloseBy(ticket, opposite, clrNONE))
      return(TradeFailed(id, GetLastError(), symbol, ""));
   JournalClose(ticket, opposite, tag);
   JournalClose(opposite, ticket, tag);
   int rest = NewTicket(before, beforeCount, symbol, openedAt, oppositeOpenedAt);
   if(rest > 0 && OrderSelect(rest, SELECT_BY_TICKET))
      JournalRoot(rest, RootOfTicket(OrderType() == type ? ticket : opposite), "");
   return(TradeDone(id, symbol, RecordOf(ticket), RecordOf(rest), RecordOf(opposite), ""));
  }

// The open market order that continues `ticket`: itself while open, else the open order of
// the same root (the journal), else the end of the "to #N" chain its comment starts.
int LiveTicket(const int ticket)
  {
   if(!OrderSelect(ticket, SELECT_BY_TICKET))
      return(-1);
   if(OrderCloseTime() == 0)
      return(OrderType() <= OP_SELL ? ticket : -1);
   int root = RootOf(ticket, OrderComment());
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES) || OrderType() > OP_SELL)
         continue;
      if(RootOf(OrderTicket(), OrderComment()) == root)
         return(OrderTicket());
     }
   int next = ticket;
   for(int hops = 0; hops < 100; hops++)
     {
      if(!OrderSelect(next, SELECT_BY_TICKET))
         return(-1);
      if(OrderCloseTime() == 0)
         return(OrderType() <= OP_SELL ? next : -1);
      next = TicketAfter(OrderComment(), "to #");
      if(next <= 0)
         return(-1);
     }
   return(-1);
  }

int OpenTickets(int &tickets[])
  {
   int count = 0;
   ArrayResize(tickets, OrdersTotal());
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(OrderSelect(i, SELECT_BY_POS, MODE_TRADES))
         tickets[count++] = OrderTicket();
     }
   return(count);
  }

// MT4's new ticket for the rest of a partly closed order: a market order of `symbol` that was
// not open before the close and keeps the open time of a closed one (as a rest does).
int NewTicket(const int &before[], const int beforeCount, const string symbol,
              const datetime openedAt, const datetime otherOpenedAt)
  {
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES) || OrderType() > OP_SELL || OrderSymbol() != symbol)
         continue;
      if(OrderOpenTime() != openedAt && OrderOpenTime() != otherOpenedAt)
         continue;
      int ticket = OrderTicket();
      bool seen = false;
      for(int j = 0; j < beforeCount && !seen; j++)
         seen = (before[j] == ticket);
      if(!seen)
         return(ticket);
     }
   return(0);
  }

double NormalizeLots(const string symbol, const double lots)
  {
   double step = MarketInfo(symbol, MODE_LOTSTEP);
   if(step <= 0)
      return(NormalizeDouble(lots, 2));
   return(NormalizeDouble(MathRound(lots / step) * step, 8));
  }

int SymbolDigits(const string symbol)
  {
   if(symbol == "")
      return(8);
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   // A symbol no longer quoted (old history) reports 0: 8 digits keep every price exact.
   return(digits > 0 ? digits : 8);
  }

//+------------------------------------------------------------------+
//| The journal (MQL4/Files/MamBridge/<login>.journal)                |
//| "R|ticket|root|tag": the root a ticket continues, the root's tag  |
//| "C|ticket|closed_by|tag": the request that closed a ticket        |
//+------------------------------------------------------------------+
void JournalOpen()
  {
   string name = "MamBridge\\" + IntegerToString(AccountNumber()) + ".journal";
   g_journal = FileOpen(name, FILE_READ | FILE_WRITE | FILE_TXT | FILE_ANSI | FILE_SHARE_READ);
   if(g_journal == INVALID_HANDLE)
     {
      Print("MamBridge: cannot open the journal ", name, ", error ", GetLastError());
      return;
     }
   g_rootCount = 0;
   g_closeCount = 0;
   while(!FileIsEnding(g_journal))
     {
      string line = FileReadString(g_journal);
      // The tag is last: it may hold the separator.
      int first = StringFind(line, "|");
      int second = (first < 0) ? -1 : StringFind(line, "|", first + 1);
      int third = (second < 0) ? -1 : StringFind(line, "|", second + 1);
      if(third < 0)
         continue;
      string kind = StringSubstr(line, 0, first);
      int ticket = (int)StringToInteger(StringSubstr(line, first + 1, second - first - 1));
      int number = (int)StringToInteger(StringSubstr(line, second + 1, third - second - 1));
      string tag = StringSubstr(line, third + 1);
      if(kind == "R")
         RememberRoot(ticket, number, tag);
      else if(kind == "C")
         RememberClose(ticket, number, tag);
     }
   FileSeek(g_journal, 0, SEEK_END);
  }

void JournalWrite(const string line)
  {
   if(g_journal == INVALID_HANDLE)
      return;
   FileWriteString(g_journal, line + "\r\n");
   FileFlush(g_journal);
  }

void JournalRoot(const int ticket, const int root, const string tag)
  {
   int index = FindSorted(g_rootTickets, g_rootCount, ticket);
   if(index >= 0 && g_roots[index] == root && (tag == "" || g_rootTags[index] == tag))
      return;
   RememberRoot(ticket, root, tag);
   JournalWrite("R|" + IntegerToString(ticket) + "|" + IntegerToString(root) + "|" + tag);
  }

void JournalClose(const int ticket, const int closedBy, const string tag)
  {
   RememberClose(ticket, closedBy, tag);
   JournalWrite("C|" + IntegerToString(ticket) + "|" + IntegerToString(closedBy) + "|" + tag);
  }

// Journals the remainders of partial closes made outside the EA (manually, by the broker),
// while their "from #X" comment still tells where they come from.
void JournalRemainders()
  {
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES) || OrderType() > OP_SELL)
         continue;
      int ticket = OrderTicket();
      string comment = OrderComment();
      if(FindSorted(g_rootTickets, g_rootCount, ticket) < 0 && TicketAfter(comment, "from #") > 0)
         JournalRoot(ticket, RootOf(ticket, comment), "");
     }
  }

void RememberRoot(const int ticket, const int root, const string tag)
  {
   int index = FindSorted(g_rootTickets, g_rootCount, ticket);
   if(index >= 0)
     {
      g_roots[index] = root;
      if(tag != "")
         g_rootTags[index] = tag;
      return;
     }
   int at = -index - 1;
   ArrayResize(g_rootTickets, g_rootCount + 1, 1024);
   ArrayResize(g_roots, g_rootCount + 1, 1024);
   ArrayResize(g_rootTags, g_rootCount + 1, 1024);
   for(int i = g_rootCount; i > at; i--)
     {
      g_rootTickets[i] = g_rootTickets[i - 1];
      g_roots[i] = g_roots[i - 1];
      g_rootTags[i] = g_rootTags[i - 1];
     }
   g_rootTickets[at] = ticket;
   g_roots[at] = root;
   g_rootTags[at] = tag;
   g_rootCount++;
  }

void RememberClose(const int ticket, const int closedBy, const string tag)
  {
   int index = FindSorted(g_closeTickets, g_closeCount, ticket);
   if(index >= 0)
     {
      g_closedBy[index] = closedBy;
      g_closeTags[index] = tag;
      return;
     }
   int at = -index - 1;
   ArrayResize(g_closeTickets, g_closeCount + 1, 1024);
   ArrayResize(g_closedBy, g_closeCount + 1, 1024);
   ArrayResize(g_closeTags, g_closeCount + 1, 1024);
   for(int i = g_closeCount; i > at; i--)
     {
      g_closeTickets[i] = g_closeTickets[i - 1];
      g_closedBy[i] = g_closedBy[i - 1];
      g_closeTags[i] = g_closeTags[i - 1];
     }
   g_closeTickets[at] = ticket;
   g_closedBy[at] = closedBy;
   g_closeTags[at] = tag;
   g_closeCount++;
  }

// The index of `ticket` in the first `count` (ascending) elements, or -(insertion point + 1).
int FindSorted(const int &tickets[], const int count, const int ticket)
  {
   int low = 0;
   int high = count - 1;
   while(low <= high)
     {
      int middle = (low + high) / 2;
      if(tickets[middle] == ticket)
         return(middle);
      if(tickets[middle] < ticket)
         low = middle + 1;
      else
         high = middle - 1;
     }
   return(-(low + 1));
  }

// The ticket a position was opened with: the journal's, else what a "from #X" comment tells.
int RootOf(const int ticket, const string comment)
  {
   int index = FindSorted(g_rootTickets, g_rootCount, ticket);
   if(index >= 0)
      return(g_roots[index]);
   int parent = TicketAfter(comment, "from #");
   if(parent <= 0)
      return(ticket);
   int parentIndex = FindSorted(g_rootTickets, g_rootCount, parent);
   return(parentIndex >= 0 ? g_roots[parentIndex] : parent);
  }

int RootOfTicket(const int ticket)
  {
   string comment = "";
   if(OrderSelect(ticket, SELECT_BY_TICKET))
      comment = OrderComment();
   return(RootOf(ticket, comment));
  }

string RootTag(const int root)
  {
   int index = FindSorted(g_rootTickets, g_rootCount, root);
   return(index >= 0 ? g_rootTags[index] : "");
  }

string CloseTag(const int ticket)
  {
   int index = FindSorted(g_closeTickets, g_closeCount, ticket);
   return(index >= 0 ? g_closeTags[index] : "");
  }

// "from #123" -> 123 for prefix "from #"; 0 when the comment does not start so.
int TicketAfter(const string comment, const string prefix)
  {
   if(StringFind(comment, prefix) != 0)
      return(0);
   string digits = StringSubstr(comment, StringLen(prefix));
   int length = StringLen(digits);
   if(length == 0)
      return(0);
   for(int i = 0; i < length; i++)
     {
      ushort c = StringGetCharacter(digits, i);
      if(c < '0' || c > '9')
         return(0);
     }
   return((int)StringToInteger(digits));
  }

// Whether a comment still names `tag` (docs/mt4-bridge.md, "Tags and comments"): equal; the tag
// with something appended that does not run on into more tag characters; or the tag cut
// short (and maybe appended to), if at least 16 characters of it are left.
bool CommentMatches(const string comment, const string tag)
  {
   int tagLength = StringLen(tag);
   int length = StringLen(comment);
   if(tagLength == 0 || length == 0)
      return(false);
   if(comment == tag)
      return(true);
   if(length > tagLength && StringSubstr(comment, 0, tagLength) == tag)
      return(!IsAlphaNumeric(StringGetCharacter(comment, tagLength)));
   int kept = 0;
   while(kept < length && IsTagCharacter(StringGetCharacter(comment, kept)))
      kept++;
   return(kept >= 16 && kept <= tagLength && StringSubstr(tag, 0, kept) == StringSubstr(comment, 0, kept));
  }

bool IsAlphaNumeric(const ushort c)
  {
   return((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
  }

bool IsTagCharacter(const ushort c)
  {
   return(IsAlphaNumeric(c) || c == ':' || c == '_' || c == '-' || c == '.');
  }

//+------------------------------------------------------------------+
//| Time: the broker's server time <-> UTC                            |
//+------------------------------------------------------------------+
// TimeCurrent() is the time of the last quote: at a start on a day off it is the last tick
// before it (a Friday evening on a Monday morning), days behind the server's clock. So the
// offset is measured only from a TimeCurrent() seen to move since OnInit, within the last
// 10 s; until then the last good offset, kept in a terminal global variable (4 weeks after
// its last use), stands in.
void SeedUtcOffset()
  {
   g_lastServerTime = TimeCurrent();
   g_lastServerTimeAt = TimeLocal();
   g_serverTimeMovedAt = 0;
   if(UseFixedUtcOffset)
     {
      g_utcOffset = ServerUtcOffsetMinutes * 60;
      g_utcOffsetKnown = true;
      return;
     }
   LoadSavedUtcOffset();
  }

void LoadSavedUtcOffset()
  {
   if(AccountNumber() <= 0 || AccountNumber() == g_utcOffsetLookedUpFor)
      return;   // not logged in yet (the next timer tick looks again), or looked for already
   g_utcOffsetLookedUpFor = AccountNumber();
   double saved = 0;
   if(!GlobalVariableGet(UtcOffsetVariable(), saved) || MathAbs(saved) > MAX_UTC_OFFSET_SECONDS)
      return;
   g_utcOffset = (int)saved;
   g_utcOffsetKnown = true;
   Print("MamBridge: broker UTC offset ", g_utcOffset / 60, " min (saved), until measured");
  }

string UtcOffsetVariable()
  {
   return("MamBridge.UtcOffset." + IntegerToString(AccountNumber()));
  }

void UpdateUtcOffset()
  {
   if(UseFixedUtcOffset)
      return;   // set by SeedUtcOffset
   if(!g_utcOffsetKnown)
      LoadSavedUtcOffset();
   datetime server = TimeCurrent();
   if(server != g_lastServerTime)
     {
      // A move counts when the server's clock ran: from a value taken before (a first value
      // after 0 is the last quote the terminal had, maybe from before a day off), by no more
      // than this computer's clock ran meanwhile (quotes from before a day off arriving at a
      // connection, or the first tick after it, jump further at once).
      long serverStep = (long)server - (long)g_lastServerTime;
      long localStep = (long)TimeLocal() - (long)g_lastServerTimeAt;
      if(g_lastServerTime != 0 && serverStep > 0 && serverStep <= localStep + 2)
         g_serverTimeMovedAt = TimeLocal();
      g_lastServerTime = server;
      g_lastServerTimeAt = TimeLocal();
     }
   // Only a TimeCurrent() seen to move since OnInit, and lately, is the server's clock.
   if(server == 0 || g_serverTimeMovedAt == 0 || TimeLocal() - g_serverTimeMovedAt > 10)
      return;
   long difference = (long)server - (long)TimeGMT();
   int offset = (int)(MathRound(difference / 900.0) * 900);
   if(MathAbs(offset) > MAX_UTC_OFFSET_SECONDS)
      return;   // a wrong clock (this computer's, or the server's): keep the last good offset
   if(g_utcOffsetKnown && offset == g_utcOffset)
      return;
   g_utcOffset = offset;
   g_utcOffsetKnown = true;
   if(AccountNumber() > 0)
      GlobalVariableSet(UtcOffsetVariable(), offset);
   Print("MamBridge: broker UTC offset ", offset / 60, " min (measured)");
  }

long ToUtc(const datetime serverTime)
  {
   if(serverTime == 0)
      return(0);
   return((long)serverTime - g_utcOffset);
  }

datetime FromUtc(const long utc)
  {
   if(utc <= 0)
      return(0);
   return((datetime)(utc + g_utcOffset));
  }

int AtLeast(const long value, const int minimum)
  {
   if(value < minimum)
      return(minimum);
   return((int)value);
  }

//+------------------------------------------------------------------+
//| JSON: flat objects in, any objects out                            |
//+------------------------------------------------------------------+
// Parses {"key": value, ...} where each value is a string, a number, true, false or null
// (the gateway sends nothing else). Values are kept as text; strings unescaped.
bool JsonParseFlat(const string text, string &keys[], string &values[])
  {
   ArrayResize(keys, 0);
   ArrayResize(values, 0);
   int n = StringLen(text);
   int i = SkipSpaces(text, 0, n);
   if(i >= n || StringGetCharacter(text, i) != '{')
      return(false);
   i = SkipSpaces(text, i + 1, n);
   if(i < n && StringGetCharacter(text, i) == '}')
      return(true);
   while(i < n)
     {
      string key = "";
      i = ReadJsonString(text, i, n, key);
      if(i < 0)
         return(false);
      i = SkipSpaces(text, i, n);
      if(i >= n || StringGetCharacter(text, i) != ':')
         return(false);
      i = SkipSpaces(text, i + 1, n);
      if(i >= n)
         return(false);
      string value = "";
      if(StringGetCharacter(text, i) == '"')
        {
         i = ReadJsonString(text, i, n, value);
         if(i < 0)
            return(false);
        }
      else
        {
         int start = i;
         while(i < n)
           {
            ushort c = StringGetCharacter(text, i);
            if(c == ',' || c == '}' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
               break;
            if(c == '{' || c == '[' || c == '"')
               return(false);   // not flat
            i++;
           }
         if(i == start)
            return(false);
         value = StringSubstr(text, start, i - start);
        }
      int size = ArraySize(keys);
      ArrayResize(keys, size + 1);
      ArrayResize(values, size + 1);
      keys[size] = key;
      values[size] = value;
      i = SkipSpaces(text, i, n);
      if(i >= n)
         return(false);
      ushort separator = StringGetCharacter(text, i);
      if(separator == '}')
         return(true);
      if(separator != ',')
         return(false);
      i = SkipSpaces(text, i + 1, n);
     }
   return(false);
  }

int SkipSpaces(const string text, int i, const int n)
  {
   while(i < n)
     {
      ushort c = StringGetCharacter(text, i);
      if(c != ' ' && c != '\t' && c != '\r' && c != '\n')
         break;
      i++;
     }
   return(i);
  }

// Reads the JSON string starting at text[i] (a quote); returns the index after it, or -1.
int ReadJsonString(const string text, int i, const int n, string &out)
  {
   if(i >= n || StringGetCharacter(text, i) != '"')
      return(-1);
   out = "";
   i++;
   while(i < n)
     {
      ushort c = StringGetCharacter(text, i);
      if(c == '"')
         return(i + 1);
      if(c != '\\')
        {
         out += ShortToString(c);
         i++;
         continue;
        }
      if(i + 1 >= n)
         return(-1);
      ushort e = StringGetCharacter(text, i + 1);
      i += 2;
      if(e == '"' || e == '\\' || e == '/')
         out += ShortToString(e);
      else if(e == 'n')
         out += "\n";
      else if(e == 'r')
         out += "\r";
      else if(e == 't')
         out += "\t";
      else if(e == 'b')
         out += ShortToString(8);
      else if(e == 'f')
         out += ShortToString(12);
      else if(e == 'u')
        {
         if(i + 4 > n)
            return(-1);
         int code = 0;
         for(int k = 0; k < 4; k++)
           {
            int digit = HexDigit(StringGetCharacter(text, i + k));
            if(digit < 0)
               return(-1);
            code = code * 16 + digit;
           }
         out += ShortToString((ushort)code);
         i += 4;
        }
      else
         return(-1);
     }
   return(-1);
  }

int HexDigit(const ushort c)
  {
   if(c >= '0' && c <= '9')
      return(c - '0');
   if(c >= 'a' && c <= 'f')
      return(c - 'a' + 10);
   if(c >= 'A' && c <= 'F')
      return(c - 'A' + 10);
   return(-1);
  }

string Field(string &keys[], string &values[], const string key)
  {
   int size = ArraySize(keys);
   for(int i = 0; i < size; i++)
     {
      if(keys[i] == key)
         return(values[i]);
     }
   return("");
  }

bool HasFields(string &keys[], const string names)
  {
   string wanted[];
   int count = StringSplit(names, ',', wanted);
   int size = ArraySize(keys);
   for(int w = 0; w < count; w++)
     {
      bool found = false;
      for(int i = 0; i < size && !found; i++)
         found = (keys[i] == wanted[w]);
      if(!found)
         return(false);
     }
   return(true);
  }

// A JSON string literal of `value`.
string JsonText(const string value)
  {
   int n = StringLen(value);
   bool plain = true;
   for(int i = 0; i < n && plain; i++)
     {
      ushort c = StringGetCharacter(value, i);
      plain = (c >= 0x20 && c != '"' && c != '\\');
     }
   if(plain)
      return("\"" + value + "\"");
   string out = "\"";
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(value, i);
      if(c == '"')
         out += "\\\"";
      else if(c == '\\')
         out += "\\\\";
      else if(c < 0x20)
         out += StringFormat("\\u%04x", (int)c);
      else
         out += ShortToString(c);
     }
   return(out + "\"");
  }

// A decimal string without trailing zeros ("1.0845", "0.1", "100"): what the gateway reads
// as an exact Decimal.
string Dec(const double value, const int digits)
  {
   string text = DoubleToString(value, digits);
   if(StringFind(text, ".") >= 0)
     {
      int end = StringLen(text);
      while(end > 0 && StringGetCharacter(text, end - 1) == '0')
         end--;
      if(end > 0 && StringGetCharacter(text, end - 1) == '.')
         end--;
      text = StringSubstr(text, 0, end);
     }
   if(text == "" || text == "-" || text == "-0")
      return("0");
   return(text);
  }
//+------------------------------------------------------------------+
