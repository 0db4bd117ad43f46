// graphql-codegen's client preset over the gateway's schema and the dashboard's own
// operations, with persisted documents: typed documents carrying their id
// (`__meta__.hash`, `sha256:<hex>`) and persisted-documents.json, the manifest to load
// into the gateway (GATEWAY_PERSISTED_MANIFEST). Run: npx graphql-codegen (in tests/js).
import type { CodegenConfig } from "@graphql-codegen/cli";
import { addTypenameSelectionDocumentTransform } from "@graphql-codegen/client-preset";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["../../gateway/documents/operations/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "./generated/": {
      preset: "client",
      // Apollo Client's cache reads __typename: the persisted documents select it.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      presetConfig: {
        fragmentMasking: false,
        persistedDocuments: true,
      },
      config: {
        // Date and DateTime are ISO-8601 strings on the wire (their @specifiedBy URLs);
        // SafeInt is a JSON number within ±(2^53−1), exact in a JavaScript number.
        scalars: { Date: "string", DateTime: "string", SafeInt: "number" },
        strictScalars: true,
        enumsAsTypes: true,
      },
    },
  },
};

export default config;
