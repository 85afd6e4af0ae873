// Shared builders for the contract tests: spending authorisations, receipt and
// earnings leaves, and a sorted-pair Merkle tree (the scheme ledger/merkle.py uses).
const { ethers } = require("hardhat");

async function domainOf(ledger) {
  const { chainId } = await ethers.provider.getNetwork();
  return { name: "MTOR RealmLedger", version: "2", chainId, verifyingContract: await ledger.getAddress() };
}

const SPEND_TYPES = {
  Spend: [
    { name: "payer", type: "address" },
    { name: "total", type: "uint256" },
  ],
};

// A payer's cumulative spending authorisation, as the EIP-2098 compact (r, vs) the contract takes.
async function signSpend(payer, ledger, total, { signer = payer } = {}) {
  const sig = ethers.Signature.from(
    await signer.signTypedData(await domainOf(ledger), SPEND_TYPES, { payer: payer.address, total }),
  );
  return { r: sig.r, vs: sig.yParityAndS };
}

// A redemption entry: take the payer's cumulative spending to `charged`, covered by `authorised`.
async function redemption(payer, ledger, charged, authorised = charged, opts = {}) {
  const { r, vs } = await signSpend(payer, ledger, authorised, opts);
  return { payer: payer.address, charged, authorised, r, vs };
}

function sortByPayer(entries) {
  return entries.slice().sort((a, b) => (BigInt(a.payer) < BigInt(b.payer) ? -1 : 1));
}

function receiptLeaf({ guid, payer, worker, amount, fee, time }) {
  const inner = ethers.keccak256(
    ethers.AbiCoder.defaultAbiCoder().encode(
      ["bytes32", "address", "address", "uint256", "uint256", "uint256"],
      [ethers.keccak256(ethers.toUtf8Bytes(guid)), payer, worker, amount, fee, time],
    ),
  );
  return ethers.keccak256(inner);
}

function earningsLeaf(account, cumulative) {
  const inner = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [account, cumulative]));
  return ethers.keccak256(inner);
}

function hashPair(a, b) {
  return BigInt(a) < BigInt(b) ? ethers.keccak256(ethers.concat([a, b])) : ethers.keccak256(ethers.concat([b, a]));
}

// Levels bottom-up; an odd node is carried up unchanged.
function merkleLevels(leaves) {
  const levels = [leaves.slice()];
  while (levels[levels.length - 1].length > 1) {
    const cur = levels[levels.length - 1];
    const next = [];
    for (let i = 0; i < cur.length; i += 2) next.push(i + 1 < cur.length ? hashPair(cur[i], cur[i + 1]) : cur[i]);
    levels.push(next);
  }
  return levels;
}

function merkleRoot(leaves) {
  if (leaves.length === 0) return ethers.ZeroHash;
  const levels = merkleLevels(leaves);
  return levels[levels.length - 1][0];
}

function merkleProof(leaves, index) {
  const proof = [];
  const levels = merkleLevels(leaves);
  for (let l = 0; l < levels.length - 1; l++) {
    const sibling = index ^ 1;
    if (sibling < levels[l].length) proof.push(levels[l][sibling]);
    index >>= 1;
  }
  return proof;
}

// Earnings tree of {address: cumulative}: returns the root, the total and a proof builder.
function earningsTree(earnings) {
  const accounts = Object.keys(earnings);
  const leaves = accounts.map((a) => earningsLeaf(a, earnings[a]));
  const total = accounts.reduce((s, a) => s + BigInt(earnings[a]), 0n);
  return {
    root: merkleRoot(leaves),
    total,
    proof: (account) => merkleProof(leaves, accounts.indexOf(account)),
  };
}

async function signRefund(signer, ledger, user, amount, nonce, deadline) {
  const types = {
    Refund: [
      { name: "user", type: "address" },
      { name: "amount", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  };
  return signer.signTypedData(await domainOf(ledger), types, { user, amount, nonce, deadline });
}

module.exports = {
  domainOf,
  signSpend,
  redemption,
  sortByPayer,
  receiptLeaf,
  earningsLeaf,
  earningsTree,
  merkleRoot,
  merkleProof,
  signRefund,
};
