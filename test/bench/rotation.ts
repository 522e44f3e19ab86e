export async function rotation(): Promise<void> {}
