// Hardhat for MTOR's contracts, fully offline: solc comes from the npm `solc`
// package (solcjs) instead of a downloaded native binary, which hardhat cannot
// fetch here (HH502).
const fs = require("fs");
const path = require("path");
const { subtask, task } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");
require("@nomicfoundation/hardhat-toolbox");

const SOLC_VERSION = "0.8.28";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper();
  const longVersion = require("solc").version().replace(/\.Emscripten\.clang$/, "");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion,
  };
});

// The Python package ships these (ledger/artifacts/) so that `mtor` never needs node.
const SHIPPED = ["NineThousand", "RealmLedger"];

task("export-artifacts", "Compile and write the ABI + bytecode the Python ledger ships")
  .addOptionalParam("out", "output folder", "ledger/artifacts")
  .setAction(async ({ out }, hre) => {
    await hre.run("compile", { quiet: true });
    fs.mkdirSync(out, { recursive: true });
    for (const name of SHIPPED) {
      const art = await hre.artifacts.readArtifact(name);
      const shipped = {
        contractName: art.contractName,
        sourceName: art.sourceName,
        compiler: `solc ${SOLC_VERSION}`,
        abi: art.abi,
        bytecode: art.bytecode,
        deployedBytecode: art.deployedBytecode,
      };
      fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(shipped, null, 2) + "\n");
    }
    console.log(`wrote ${SHIPPED.join(", ")} to ${out}`);
  });

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10000 },
      // cancun: supported by both hardhat's EVM and py-evm (the embedded chain).
      evmVersion: "cancun",
    },
  },
  networks: {
    // The default block gas limit (30M): the realm keeps every transaction under
    // its own cap (15M by default, below the 16.7M per-transaction cap of EIP-7825).
    hardhat: { hardfork: "cancun" },
  },
  paths: { sources: "./contracts", tests: "./test", cache: "./cache", artifacts: "./artifacts" },
  mocha: { timeout: 60000 },
};
