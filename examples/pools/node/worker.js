'use strict';
// Counts the words of payload.text: a rota user-pool worker in Node.js.
const rota = require('../../../clients/node/rota-worker');

rota.run(async (payload, ctx) => {
  const words = payload.text.split(/\s+/).filter((word) => word !== '');
  return { words: words.length };
});
