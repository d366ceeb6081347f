// Socket.IO 4 baseline for signalroom's benchmark (bench/): what users pick today for the same job.
//
// One room per session: a client joins the room named by its handshake query `room` (default
// "bench") when it connects, so the CONNECT acknowledgement (`40{"sid":...}`) means "joined".
// Every `signal` event is emitted to the whole room, the sender included (as OpenVidu broadcasts
// do), with Socket.IO's broadcast path (the packet is encoded once per emit).
//
//   node server.js [--port 0]     prints `socketio ready: http://127.0.0.1:PORT` once listening
//
// WebSocket transport only (the load generator opens `/socket.io/?EIO=4&transport=websocket`),
// no per-message deflate, the optional native `bufferutil`/`utf-8-validate` addons installed as
// Socket.IO's docs recommend for performance.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 1e6,
});

io.on("connection", (socket) => {
  const room = String(socket.handshake.query.room || "bench");
  socket.join(room);
  socket.on("signal", (data) => {
    io.to(room).emit("signal", data);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  const { port: bound } = httpServer.address();
  process.stdout.write(`socketio ready: http://127.0.0.1:${bound}\n`);
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
