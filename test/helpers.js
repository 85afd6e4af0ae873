// Shared builders for the contract tests: packed settlement entries, receipt
// leaves and a sorted-pair Merkle tree (the same scheme ledger/merkle.py uses).
const { ethers } = require("hardhat");

const ADDRESS_BITS = 160n;

function entry(address, amount) {
  return (BigInt(amount) << ADDRESS_BITS) | BigInt(address);
}

function receiptLeaf({ guid, payer, worker, amount, time }) {
  const inner = ethers.keccak256(
    ethers.AbiCoder.defaultAbiCoder().encode(
      ["bytes32", "address", "address", "uint256", "uint256"],
      [ethers.keccak256(ethers.toUtf8Bytes(guid)), payer, worker, amount, time],
    ),
  );
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

async function signRefund(operator, ledger, user, amount, nonce, deadline) {
  const { chainId } = await ethers.provider.getNetwork();
  const domain = { name: "MTOR RealmLedger", version: "1", chainId, verifyingContract: await ledger.getAddress() };
  const types = {
    Refund: [
      { name: "user", type: "address" },
      { name: "amount", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  };
  return operator.signTypedData(domain, types, { user, amount, nonce, deadline });
}

module.exports = { entry, receiptLeaf, merkleRoot, merkleProof, signRefund };
